"""Stand-ins for the upstream CK repositories, generated from tests/data/ck-upstream/*.tsv.

Each stand-in repository (ck-env, ck-mlperf, ck-tensorrt, ck-ml, ck-crowdtuning, ck-docker)
holds every entry of the real one with the same module, alias, UID and tags and a minimal
meta. ``module`` entries are left out (their real code ships inside ck itself; a stand-in
without code would break ck), as are ``env`` and ``jnotebook``. One upstream-style program,
``ck-mlperf:program:image-classification-onnx-py`` (its real UID), gets real ``run_deps``
and a script that checks the env vars ck-mlperf's programs read.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data" / "ck-upstream"
SKIP_MODULES = {"module", "env", "jnotebook"}
UPSTREAM_PROGRAM = ("image-classification-onnx-py", "51b7e87487587f51")


@dataclass(frozen=True)
class Entry:
    repo: str
    module: str
    alias: str
    uid: str
    tags: tuple[str, ...]
    extra: str  # variations (packages) or env prefix (soft)


def upstream_entries() -> list[Entry]:
    entries: dict[tuple[str, str, str], Entry] = {}
    for path in sorted(DATA.glob("entries*.tsv")):
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if row["module"] in SKIP_MODULES or row["repo"] == "repo":
                    continue
                extra = row.get("variations") or row.get("soft_env_prefix") or ""
                entry = Entry(
                    row["repo"],
                    row["module"],
                    row["alias"],
                    row["uid"],
                    tuple(t for t in row["tags"].split(",") if t),
                    extra,
                )
                entries.setdefault((entry.repo, entry.module, entry.alias), entry)
    return list(entries.values())


def _module_uids() -> dict[str, str]:
    """Module name -> UID, from the upstream module entries and this repository's index."""
    uids: dict[str, str] = {}
    for path in sorted(DATA.glob("entries*.tsv")):
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if row["module"] == "module":
                    uids.setdefault(row["alias"], row["uid"])
    for alias_file in (Path(__file__).resolve().parents[1] / ".cm").glob("alias-a-*"):
        uids.setdefault(alias_file.name[len("alias-a-") :], alias_file.read_text().strip())
    return uids


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def _meta(entry: Entry) -> dict[str, object]:
    meta: dict[str, object] = {"backup_data_uid": entry.uid, "tags": list(entry.tags)}
    if entry.module == "soft":
        meta["customize"] = {"env_prefix": entry.extra}
        meta["soft_name"] = entry.alias
    elif entry.module == "package":
        meta["variations"] = {v: {} for v in entry.extra.split(",") if v}
    return meta


_CHECK_ENV = """\
import os, sys
need = ["CK_ENV_COMPILER_PYTHON_FILE", "CK_ENV_ONNX_MODEL_ONNX_FILEPATH",
        "CK_ENV_ONNX_MODEL_INPUT_LAYER_NAME", "CK_ENV_ONNX_MODEL_OUTPUT_LAYER_NAME",
        "ML_MODEL_MODEL_NAME", "ML_MODEL_DATA_LAYOUT", "ML_MODEL_IMAGE_HEIGHT",
        "ML_MODEL_GIVEN_CHANNEL_MEANS", "ML_MODEL_NORMALIZE_DATA", "ML_MODEL_SUBTRACT_MEAN"]
missing = [k for k in need if not os.environ.get(k)]
if missing or not os.path.isfile(os.environ.get("CK_ENV_ONNX_MODEL_ONNX_FILEPATH", "")):
    sys.exit("UPSTREAM-ENV-MISSING " + " ".join(missing))
import numpy, onnxruntime
print("UPSTREAM-ENV-OK", os.environ["ML_MODEL_MODEL_NAME"], os.environ["ML_MODEL_DATA_LAYOUT"])
"""


def _upstream_program_meta() -> dict[str, object]:
    def dep(tags: str, sort: int) -> dict[str, object]:
        return {"local": "yes", "sort": sort, "tags": tags}

    return {
        "backup_data_uid": UPSTREAM_PROGRAM[1],
        "data_name": UPSTREAM_PROGRAM[0],
        "main_language": "python",
        "no_compile": "yes",
        "no_target_file": "yes",
        "process_in_tmp": "yes",
        "program": "yes",
        "run_cmds": {
            "default": {
                "ignore_return_code": "no",
                "run_time": {"run_cmd_main": "$<<CK_ENV_COMPILER_PYTHON_FILE>>$ ../check_env.py"},
            }
        },
        "run_deps": {
            "python": dep("compiler,lang-python", 0),
            "lib-python-numpy": dep("lib,python-package,numpy", 10),
            "lib-python-onnxruntime": dep("lib,python-package,onnxruntime", 20),
            "images": dep("dataset,imagenet,preprocessed", 40),
            "weights": {
                **dep("model,image-classification,onnx", 30),
                "pass_matching_tags_to": {"side.": ["images"]},
            },
        },
        "tags": ["image-classification", "onnx", "lang-python"],
    }


def build_standins(root: Path) -> dict[str, Path]:
    """Write the stand-in repositories under ``root``; returns {repo name: path}."""
    repos: dict[str, Path] = {}
    for entry in upstream_entries():
        repo = repos.setdefault(entry.repo, root / entry.repo)
        module = repo / entry.module
        folder = module / entry.alias
        meta = _meta(entry)
        if entry.module == "program" and (entry.alias, entry.uid) == UPSTREAM_PROGRAM:
            meta = _upstream_program_meta()
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "check_env.py").write_text(_CHECK_ENV, encoding="utf-8")
        _write_json(folder / ".cm" / "meta.json", meta)
        _write_json(
            folder / ".cm" / "info.json", {"backup_data_uid": entry.uid, "data_name": entry.alias}
        )
        _write_json(folder / ".cm" / "desc.json", {})
        (module / ".cm").mkdir(parents=True, exist_ok=True)
        (module / ".cm" / f"alias-a-{entry.alias}").write_text(entry.uid + "\n")
        (module / ".cm" / f"alias-u-{entry.uid}").write_text(entry.alias + "\n")
    module_uids = _module_uids()
    for name, repo in repos.items():
        for module in (d.name for d in repo.iterdir() if d.is_dir()):
            uid = module_uids[module]
            (repo / ".cm").mkdir(exist_ok=True)
            (repo / ".cm" / f"alias-a-{module}").write_text(uid + "\n")
            (repo / ".cm" / f"alias-u-{uid}").write_text(module + "\n")
        _write_json(
            repo / ".ckr.json",
            {"data_alias": name, "data_name": name, "data_uoa": name, "dict": {"repo_deps": []}},
        )
    return repos
