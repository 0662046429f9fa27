"""The cache of chosen layouts, one JSON file keyed by (model, backend, machine).

The key hashes the model file (path, size, modification time), the backend and its
options (provider, precision, device), the runtime versions and the machine (CPU model,
usable cores, host name): a new model, runtime or machine probes again. The file lives
in ``$CK_TUNING_CACHE`` or ``$XDG_CACHE_HOME/ckvision/tuning.json`` (default
``~/.cache``); it is replaced atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ckvision.fsutil import atomic_write_json

__all__ = [
    "cache_path",
    "cache_key",
    "load_choice",
    "store_choice",
    "drop_choice",
    "CACHE_VERSION",
]

CACHE_VERSION = 3  # 3: Offline's probe times views, as its run forms batches in row order


def cache_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("CK_TUNING_CACHE"):
        return Path(env["CK_TUNING_CACHE"])
    base = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ckvision" / "tuning.json"


def cache_key(
    model_path: Path, backend: str, options: Mapping[str, Any], provenance: Mapping[str, Any]
) -> str:
    stat = model_path.stat()
    host = provenance.get("host", {})
    material = {
        "model": [str(model_path.resolve()), stat.st_size, stat.st_mtime_ns],
        "backend": backend,
        "options": dict(options),
        "versions": provenance.get("versions", {}),
        "machine": [host.get("cpu_model"), host.get("cpu_affinity"), host.get("hostname")],
        "v": CACHE_VERSION,
    }
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a damaged cache only costs a new probe
    return data if isinstance(data, dict) else {}


def load_choice(path: Path, key: str) -> dict[str, Any] | None:
    choice = _read(path).get(key)
    return choice if isinstance(choice, dict) else None


def store_choice(path: Path, key: str, choice: dict[str, Any]) -> None:
    data = _read(path)
    data[key] = choice
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, data)


def drop_choice(path: Path, key: str) -> bool:
    """Forget ``key``'s choice (a run missed its prediction); True if it was cached."""
    data = _read(path)
    if key not in data:
        return False
    del data[key]
    atomic_write_json(path, data)
    return True
