"""Write classic CK experiment entries without ``ck``, in the layout ``ck`` itself writes.

``ck`` 2.6.4 runs on Python <= 3.11 only, so where it cannot run (a GPU machine with
Python 3.12, say) runs are recorded here instead, exactly as
``ck add experiment`` (what ``ck benchmark --record`` calls) writes them with
``--skip_stat_analysis``, ``--sort_keys`` and ``process_multi_keys=['##characteristics#*']``::

    <root>/.cm/alias-a-<name>, alias-u-<uid>       the entry's name <-> uid
    <root>/<name>/.cm/{meta,info,desc,updates}.json  tags, meta, points, control info
    <root>/<name>/desc.json                          key descriptions (empty)
    <root>/<name>/ckp-<point>.0001.json              features, choices, characteristics_list
    <root>/<name>/ckp-<point>.features.json          features, choices, sub_points
    <root>/<name>/ckp-<point>.features_flat.json     the same, flattened
    <root>/<name>/ckp-<point>.flat.json              characteristics, flattened, '#min'

Each call adds one point (one run). The entry is locked while it is updated with ck's
own lock file (``.cm/ck_lock.txt``, expiring after 120 s), every file is written
atomically, and nothing already recorded is rewritten except the entry's meta.
tests/test_offline_writer.py checks the result against an entry the real ``ck`` wrote.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError, DataError
from ckvision.fsutil import atomic_write_text

__all__ = ["record_point", "ck_flatten", "CK_VERSION"]

CK_VERSION = ("2", "6", "4")  # the ck whose layout this writes
EXPERIMENT_MODULE_UID = "bc0409fb61f0aa82"  # module:experiment in ck 2.6.4
LOCK_FILE = "ck_lock.txt"
LOCK_EXPIRE_S = 120.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def _uid() -> str:
    return uuid.uuid4().hex[:16]  # ck.gen_uid: the first 16 hex digits of a uuid4


def _control() -> dict[str, Any]:
    return {
        "engine": "CK",
        "iso_datetime": datetime.datetime.now().isoformat(),
        "version": list(CK_VERSION),
    }


def _dump(path: Path, data: Any, sort_keys: bool = True) -> None:
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False, default=str)
    atomic_write_text(path, text)
    path.chmod(0o644)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"corrupt experiment entry file {path}: {err}") from err


def ck_flatten(data: Any, prefix: str = "#") -> dict[str, Any]:
    """ck's ``flatten_dict``: dict keys become ``#key``, list items ``@index``."""
    out: dict[str, Any] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}#{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}@{i}")
        else:
            out[key] = value

    walk(data, prefix)
    return out


@contextlib.contextmanager
def _locked(entry: Path) -> Iterator[None]:
    """ck's entry lock: ``.cm/ck_lock.txt`` holds a uid and an expiry; a stale one is taken."""
    path = entry / ".cm" / LOCK_FILE
    deadline = time.monotonic() + LOCK_EXPIRE_S + 5
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                if os.path.getmtime(path) + LOCK_EXPIRE_S < time.time():
                    os.unlink(path)  # expired, as ck would treat it
                    continue
            if time.monotonic() > deadline:
                raise DataError(f"experiment entry {entry} stays locked ({path})") from None
            time.sleep(0.2)
    with os.fdopen(fd, "w") as handle:
        handle.write(f"{_uid()}\n{LOCK_EXPIRE_S}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _create_entry(root: Path, name: str) -> Path:
    entry = root / name
    uid = _uid()
    (entry / ".cm").mkdir(parents=True, exist_ok=True)
    _dump(
        entry / ".cm" / "info.json",
        {
            "backup_data_uid": uid,
            "backup_module_uid": EXPERIMENT_MODULE_UID,
            "backup_module_uoa": "experiment",
            "control": _control(),
            "data_name": name,
        },
    )
    _dump(entry / ".cm" / "desc.json", {})
    _dump(entry / ".cm" / "meta.json", {})
    _dump(entry / ".cm" / "updates.json", {"control": []})
    _dump(
        entry / "desc.json",
        {"features_desc": {}, "choices_desc": {}, "characteristics_desc": {}},
        sort_keys=False,
    )
    atomic_write_text(root / ".cm" / f"alias-a-{name}", uid + "\n")
    atomic_write_text(root / ".cm" / f"alias-u-{uid}", name + "\n")
    return entry


def record_point(
    root: Path,
    name: str,
    *,
    tags: Sequence[str],
    meta: Mapping[str, Any],
    characteristics: Mapping[str, Any],
    features: Mapping[str, Any] | None = None,
    choices: Mapping[str, Any] | None = None,
) -> Path:
    """Add one point to experiment entry ``root/name`` (made if missing); returns the
    point's ``ckp-<point>.0001.json``. ``characteristics`` is one repetition, e.g.
    ``{"run": record}`` as our post-processing writes it."""
    if not _NAME.match(name):
        raise ConfigError(f"experiment entry name {name!r}: use letters, digits, '.', '_', '-'")
    bad = [t for t in tags if not t or "," in t or t != t.strip()]
    if bad:
        raise ConfigError(f"experiment tag {bad[0]!r}: tags are non-empty, without ','")
    root = Path(root)
    entry = root / name
    if not (entry / ".cm" / "info.json").is_file():
        entry = _create_entry(root, name)
    features, choices = dict(features or {}), dict(choices or {})
    with _locked(entry):
        dde = _load(entry / ".cm" / "meta.json")
        dde.setdefault("added", _control())
        if not dde.get("meta"):
            dde["meta"] = dict(meta)
        dde["tags"] = list(tags)
        dde["points"] = str(int(dde.get("points", "0")) + 1)
        point = f"ckp-{_uid()}"
        ft = {"features": features, "choices": choices, "choices_order": []}
        characteristics_list = [dict(characteristics)]
        flat = {
            f"{k}#min": v
            for k, v in ck_flatten({"characteristics": characteristics}).items()
            if k.startswith("##characteristics#")
        }
        _dump(entry / f"{point}.flat.json", flat)
        _dump(entry / f"{point}.0001.json", {**ft, "characteristics_list": characteristics_list})
        _dump(entry / f"{point}.features.json", {**ft, "sub_points": 1})
        _dump(entry / f"{point}.features_flat.json", ck_flatten(ft))
        updates = _load(entry / ".cm" / "updates.json")
        updates.setdefault("control", []).append(_control())
        _dump(entry / ".cm" / "updates.json", updates)
        _dump(entry / ".cm" / "meta.json", dde)
    return entry / f"{point}.0001.json"
