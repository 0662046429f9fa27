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
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckvision.errors import DataError

__all__ = [
    "RecordedRun",
    "SkippedPointWarning",
    "experiment_root",
    "find_entries",
    "iter_runs",
]

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


class SkippedPointWarning(UserWarning):
    """A recorded point (or entry meta) that cannot be read; the message names its file."""


Warn = Callable[[str], None]


def _warn(message: str) -> None:
    warnings.warn(message, SkippedPointWarning, stacklevel=3)


def _entry_tags(entry: Path, warn: Warn = _warn) -> tuple[str, ...]:
    meta = entry / ".cm" / "meta.json"
    if not meta.exists():
        return ()
    try:
        tags = json.loads(meta.read_text(encoding="utf-8")).get("tags", [])
        if not isinstance(tags, list):
            raise ValueError("'tags' is not a list")
        return tuple(str(t) for t in tags)
    except (OSError, ValueError, AttributeError) as err:
        warn(f"skipping the tags of {meta}: {err}")
        return ()


def find_entries(
    paths: Sequence[Path] = (), tags: Sequence[str] = (), warn: Warn | None = None
) -> list[Path]:
    """Entry dirs: the given ones, or every entry under :func:`experiment_root`."""
    if paths:
        given = [Path(p) for p in paths]
        missing = [str(p) for p in given if not p.is_dir()]
        if missing:
            raise DataError(f"no such experiment entry: {', '.join(missing)}")
        entries = [e for p in given for e in _entries_under(p)]
    else:
        root = experiment_root()
        entries = sorted(p for p in root.glob("*") if p.is_dir() and not p.name.startswith("."))
    want = set(tags)
    return [e for e in entries if not want or want <= set(_entry_tags(e, warn or _warn))]


def _entries_under(path: Path) -> list[Path]:
    """``path`` itself when it is an entry (it has ``.cm/`` or point files), else every
    entry below it (e.g. a whole experiment/ folder, or a repository's experiment/)."""
    if (path / ".cm").is_dir() or any(path.glob("ckp-*.json")):
        return [path]
    return sorted(
        meta.parent.parent
        for meta in path.rglob(".cm/meta.json")
        if not any(part.startswith(".") for part in meta.parent.parent.relative_to(path).parts)
    )


# What a record must hold for tables and plots to read it.
_RECORD_FIELDS = {"loadgen": dict, "config": dict, "model": dict, "dataset": dict}
# ... and what a record made by another tool holds instead (``record["tool"]``)
_TOOL_FIELDS = {"perf_analyzer": {"config": dict, "model": dict, "perf_analyzer": dict}}


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "its run record is not an object"
    if not isinstance(record.get("record_version"), int):
        return "its run record has no integer record_version"
    fields = _TOOL_FIELDS.get(str(record.get("tool")), _RECORD_FIELDS)
    for key, kind in fields.items():
        if not isinstance(record.get(key), kind):
            return f"its run record's {key!r} is missing or not an object"
    return None


def _point_records(path: Path) -> list[dict[str, Any]]:
    """Our run records in one point file; ValueError says what is wrong with it."""
    try:
        point = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ValueError(f"cannot read it: {err.strerror or err}") from err
    except ValueError as err:
        raise ValueError(f"not valid JSON ({err})") from err
    chars = point.get("characteristics_list") if isinstance(point, dict) else None
    if not isinstance(chars, list) or not chars:
        raise ValueError("no characteristics_list")
    records: list[dict[str, Any]] = []
    for item in chars:
        record = item.get("run") if isinstance(item, dict) else None
        problem = _problem(record)
        if problem or not isinstance(record, dict):
            raise ValueError(problem)
        records.append(record)
    return records


def iter_runs(entries: Sequence[Path], warn: Warn | None = None) -> Iterator[RecordedRun]:
    """Every run record in the entries.

    A point file that is corrupt, truncated or not a ckvision run record is skipped with
    one warning naming the file (``warn``, default: a :class:`SkippedPointWarning`);
    the other points are still returned. Nothing is skipped silently.
    """
    say = warn or _warn
    for entry in entries:
        tags = _entry_tags(entry, say)
        for path in sorted(entry.glob("ckp-*.json")):
            match = _POINT_FILE.match(path.name)
            if not match:
                continue  # .features.json, .flat.json, ...
            try:
                records = _point_records(path)
            except ValueError as err:
                say(f"skipping experiment point {path}: {err}")
                continue
            for record in records:
                yield RecordedRun(
                    entry.name, tags, match.group(1), int(match.group(2)), record, path
                )
