"""Reading classic CK experiment entries, as ``ck benchmark --record`` writes them.

An entry is ``<repo>/experiment/<name>/`` with ``.cm/meta.json`` (its tags) and one
``ckp-<point>.<NNNN>.json`` per recorded repetition of each point, whose
``characteristics_list[i].run`` is our run record. Everything that reads results
goes through here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.errors import DataError

__all__ = ["RecordedRun", "experiment_root", "find_entries", "iter_runs"]

_POINT_FILE = re.compile(r"^ckp-([0-9a-f]+)\.(\d{4})\.json$")


@dataclass(frozen=True)
class RecordedRun:
    entry: str  # experiment entry name (record_uoa)
    tags: tuple[str, ...]
    point: str
    repetition: int
    record: dict[str, Any]  # our run record (characteristics_list[i].run)
    path: Path


def experiment_root(env: dict[str, str] | None = None) -> Path:
    """``$CK_REPOS/local/experiment`` (CK's default CK_REPOS is ``~/CK``)."""
    env = dict(os.environ) if env is None else env
    repos = Path(env.get("CK_REPOS") or Path.home() / "CK")
    return repos / "local" / "experiment"


def _entry_tags(entry: Path) -> tuple[str, ...]:
    meta = entry / ".cm" / "meta.json"
    try:
        return tuple(json.loads(meta.read_text(encoding="utf-8")).get("tags", []))
    except (OSError, ValueError):
        return ()


def find_entries(paths: Sequence[Path] = (), tags: Sequence[str] = ()) -> list[Path]:
    """Entry dirs: the given ones, or every entry under :func:`experiment_root`."""
    if paths:
        entries = [Path(p) for p in paths]
        missing = [str(p) for p in entries if not p.is_dir()]
        if missing:
            raise DataError(f"no such experiment entry: {', '.join(missing)}")
    else:
        root = experiment_root()
        entries = sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith("."))
    want = set(tags)
    return [e for e in entries if want <= set(_entry_tags(e))]


def iter_runs(entries: Sequence[Path]) -> Iterator[RecordedRun]:
    """Every run record in the entries (points that are not ours are skipped)."""
    for entry in entries:
        tags = _entry_tags(entry)
        for path in sorted(entry.glob("ckp-*.json")):
            match = _POINT_FILE.match(path.name)
            if not match:
                continue  # .features.json, .flat.json, ...
            try:
                point = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise DataError(f"corrupt experiment point {path}: {err}") from err
            for chars in point.get("characteristics_list", []):
                record = chars.get("run", {})
                if isinstance(record, dict) and "record_version" in record:
                    yield RecordedRun(entry.name, tags, match.group(1), int(match.group(2)),
                                      record, path)
