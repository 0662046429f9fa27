"""``systems/<system>.json``: what the runs recorded, merged with the user's description.

The field names are MLPerf's (``SYSTEM_DESC_REQUIRED_FIELDS`` of the v6 checker); every
value is written as a string (the checker reads a numeric 0 as empty). Fields the runs
cannot know must come from the user's file: a missing or empty one, an unknown field,
or a placeholder ("TBD", ...) is refused in one line naming them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ckvision.submission import SubmissionError

__all__ = ["REQUIRED_FIELDS", "NON_EMPTY_FIELDS", "system_description", "load_user_description"]

REQUIRED_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
)
# the checker wants a meaningful (non-empty) answer for these
NON_EMPTY_FIELDS = frozenset(
    {
        "division",
        "submitter",
        "system_type",
        "status",
        "system_name",
        "number_of_nodes",
        "host_processor_model_name",
        "host_processors_per_node",
        "host_processor_core_count",
        "host_memory_capacity",
        "host_memory_configuration",
        "host_storage_capacity",
        "host_storage_type",
        "host_networking",
        "host_network_card_count",
        "host_networking_topology",
        "accelerators_per_node",
        "accelerator_model_name",
        "accelerator_memory_capacity",
        "accelerator_host_interconnect",
        "accelerator_memory_configuration",
        "accelerator_interconnect",
        "cooling",
        "framework",
        "operating_system",
        "other_software_stack",
    }
)
OPTIONAL_FIELDS = frozenset(
    {"host_processor_url", "host_processor_vcpu_count", "host_processor_caches_url", "is_network"}
)
STATUSES = ("available", "preview", "rdi")
SYSTEM_TYPES = ("edge", "datacenter,edge", "edge,datacenter")  # plain datacenter: see README
_PLACEHOLDERS = {"tbd", "todo", "tba", "xxx", "?", "unknown", "fixme", "<fill in>"}
_CPU_ONLY = {  # what a run on the CPU execution provider says about accelerators
    "accelerators_per_node": "0",
    "accelerator_model_name": "N/A (CPU only)",
    "accelerator_memory_capacity": "N/A",
    "accelerator_host_interconnect": "N/A",
    "accelerator_memory_configuration": "N/A",
    "accelerator_interconnect": "N/A",
    "accelerator_frequency": "",
    "accelerator_interconnect_topology": "",
    "accelerator_on-chip_memories": "",
}


def load_user_description(path: Path) -> dict[str, str]:
    """The user's JSON object of field -> value (strings or numbers), checked."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise SubmissionError(f"system description {path}: {err.strerror or err}") from err
    except ValueError as err:
        raise SubmissionError(f"system description {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise SubmissionError(f"system description {path}: want a JSON object of fields")
    known = set(REQUIRED_FIELDS) | OPTIONAL_FIELDS
    unknown = sorted(k for k in data if k not in known)
    if unknown:
        raise SubmissionError(
            f"system description {path}: unknown field(s) {', '.join(unknown)} "
            "(MLPerf's names are listed in ckvision/submission/system.py)"
        )
    out: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise SubmissionError(
                f"system description {path}: field {key} must be a string or a number"
            )
        text = str(value).strip()
        if text.lower() in _PLACEHOLDERS:
            raise SubmissionError(
                f"system description {path}: field {key} is a placeholder ({text!r}); "
                "give the real value"
            )
        out[key] = text
    return out


def _gib(value: Any) -> str | None:
    try:
        return f"{int(value) / 2**30:.1f} GB"
    except (TypeError, ValueError):
        return None


def recorded_fields(records: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """What the runs' provenance says about the system (the first record's; build has
    already refused runs that differ)."""
    record = records[0]
    prov = record.get("provenance") or {}
    host = prov.get("host") or {}
    versions = prov.get("versions") or {}
    backend = record.get("backend") or {}
    out: dict[str, str] = {}
    if host.get("cpu_model"):
        out["host_processor_model_name"] = str(host["cpu_model"])
    if host.get("cpu_count"):
        out["host_processor_vcpu_count"] = str(host["cpu_count"])
    memory = _gib(host.get("memory_bytes"))
    if memory:
        out["host_memory_capacity"] = memory
    if host.get("system"):
        out["operating_system"] = str(host["system"])
    backend_versions = backend.get("versions") or {}
    name = str(backend.get("name") or "")
    if name == "onnxruntime" and backend_versions.get("onnxruntime"):
        out["framework"] = f"ONNX Runtime {backend_versions['onnxruntime']}"
    elif name and versions.get(name):
        out["framework"] = f"{name} {versions[name]}"
    stack = [f"{k} {v}" for k, v in sorted(versions.items()) if k not in (name,)]
    if stack:
        out["other_software_stack"] = ", ".join(stack)
    providers = str(backend_versions.get("providers", ""))
    config = record.get("config") or {}
    if providers == "CPUExecutionProvider" or (
        name in ("onnxruntime", "null") and config.get("execution_provider") == "cpu"
    ):
        out.update(_CPU_ONLY)
    return out


def system_description(
    records: Sequence[Mapping[str, Any]],
    user: Mapping[str, str],
    *,
    division: str,
    submitter: str,
    system: str,
    source: Path,
) -> dict[str, str]:
    """The merged ``systems/<system>.json`` (user values win), or one refusal line."""
    merged = recorded_fields(records)
    merged.update(user)
    for key, want in (("division", division), ("submitter", submitter)):
        if merged.get(key, want) != want:
            raise SubmissionError(
                f"system description {source}: {key} is {merged[key]!r} but the tree is "
                f"for {want!r}"
            )
    merged["division"], merged["submitter"] = division, submitter
    merged.setdefault("system_name", system)
    missing = [k for k in REQUIRED_FIELDS if k not in merged]
    empty = [k for k in REQUIRED_FIELDS if k in NON_EMPTY_FIELDS and not merged.get(k)]
    if missing or empty:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if empty:
            parts.append(f"empty {', '.join(empty)}")
        raise SubmissionError(
            f"system description {source}: {'; '.join(parts)} (the runs cannot know these; "
            "add them to the file)"
        )
    if merged["status"].lower() not in STATUSES:
        raise SubmissionError(
            f"system description {source}: status {merged['status']!r}; use one of "
            f"{', '.join(STATUSES)}"
        )
    if merged["system_type"] not in SYSTEM_TYPES:
        raise SubmissionError(
            f"system description {source}: system_type {merged['system_type']!r}; use one of "
            f"{', '.join(SYSTEM_TYPES)} (a plain 'datacenter' crashes the v6 checker)"
        )
    return {k: merged[k] for k in (*REQUIRED_FIELDS, *sorted(OPTIONAL_FIELDS)) if k in merged}
