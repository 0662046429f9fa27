"""Nodes get their inputs through their own CK (issue 21), on a real local Ray cluster of 2
nodes (1 CPU and the exclusive slot each) with real ``ck``: node A's CK knows our
repository and has the model and dataset packages' env entries; node B's CK knows
nothing, so the driver's files are shipped to it. A package A cannot install is one line
and A's points are not run. Every address is 127.0.0.1 (shared/ray.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, before Ray starts
ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ckvision[cluster]'")

from cluster_common import QUICK, tiny_inputs  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from ckvision.cluster import SLOT, ClusterPointRunner  # noqa: E402
from ckvision.experiments.entries import experiment_root  # noqa: E402
from ckvision.models.contract import ModelContract  # noqa: E402
from ckvision.program import DATASET_ENV, MODEL_ENV  # noqa: E402
from ckvision.sweeps import batch_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CK = str(Path(sys.executable).with_name("ck"))
MODEL_VAR = MODEL_ENV["onnxruntime"][0]
PACKAGES = {"model": (MODEL_VAR, "model,onnx,ckvtest"), "dataset": (DATASET_ENV, "dataset,ckvtest")}

pytestmark = pytest.mark.skipif(not Path(CK).is_file(), reason=f"no ck beside {sys.executable}")


def _ck(env: dict[str, str], *args: str) -> None:
    subprocess.run(  # noqa: S603 - argument list, no shell
        [CK, *args], env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL
    )


def _env_entry(env: dict[str, str], name: str, tags: str, values: dict[str, str]) -> None:
    """An installed package's env entry, as ``ck install`` leaves it (tags + env)."""
    _ck(env, "add", f"env:{name}", f"--tags={tags}", "--quiet")
    meta = Path(env["CK_REPOS"]) / "local" / "env" / name / ".cm" / "meta.json"
    meta.write_text(json.dumps({"tags": tags.split(","), "env": values}), encoding="utf-8")


@pytest.fixture()
def inputs(
    tmp_path: Path, tiny_onnx_model: Path, tiny_contract: ModelContract, tiny_dataset: Any
) -> Any:
    return tiny_inputs(tmp_path, tiny_onnx_model, tiny_contract, tiny_dataset)


@pytest.fixture()
def cluster(tmp_path: Path, inputs: Any) -> Iterator[dict[str, Any]]:
    """Node A (the head: its CK has our repo and both packages), node B (an empty CK)."""
    envs = {}
    for node in ("a", "b"):
        envs[node] = {
            "CK_REPOS": str(tmp_path / node / "repos"),
            "CK_TOOLS": str(tmp_path / node / "tools"),
            "CKVISION_CLUSTER_CACHE": str(tmp_path / node / "cache"),
        }
    ck_a = dict(os.environ, **envs["a"])
    _ck(ck_a, "add", "repo:ck-mlperf-vision", f"--path={ROOT}", "--quiet")
    _env_entry(ck_a, "ckvtest-model", PACKAGES["model"][1], {MODEL_VAR: str(inputs.model_path)})
    _env_entry(ck_a, "ckvtest-data", PACKAGES["dataset"][1], {DATASET_ENV: str(inputs.dataset_dir)})
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {SLOT: 1}, "env_vars": envs["a"]},
    )
    c.add_node(num_cpus=1, resources={SLOT: 1}, env_vars=envs["b"])
    c.wait_for_nodes()
    ray.init(address=c.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield {"a": c.head_node.node_id, "envs": envs}
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture()
def ck_repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CK_REPOS", str(tmp_path / "driver-repos"))
    return experiment_root()


def _fleet(inputs: Any, log: list[str], packages: dict[str, tuple[str, str]]) -> Any:
    runner = ClusterPointRunner(
        "onnxruntime",
        ["ck"],
        QUICK,
        {"v": 1},
        inputs,
        each_node=True,
        packages=packages,
        log=log.append,
    )
    runner.attach(ray)
    return runner


@pytest.mark.timeout(120)
def test_a_node_with_ck_uses_its_packages_and_one_without_gets_the_files_shipped(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    log: list[str] = []
    results = batch_sweep(_fleet(inputs, log, PACKAGES), [2])
    assert len(results) == 2, log
    by_node = {r.record["cluster"]["node_id"]: r.record for r in results}
    assert by_node[cluster["a"]]["cluster"]["inputs"] == {"model": "ck", "dataset": "ck"}
    assert by_node[cluster["a"]]["model"]["path"] == str(inputs.model_path)  # A's CK path
    (b,) = set(by_node) - {cluster["a"]}
    # shipped when the node prepared, before its first point: the point found them cached
    assert by_node[b]["cluster"]["inputs"] == {"model": "cached", "dataset": "cached"}
    ready = [line for line in log if " ready (" in line]
    assert any("model from its CK, dataset from its CK" in line for line in ready), ready
    assert any("model and dataset shipped" in line for line in ready), ready


@pytest.mark.timeout(120)
def test_a_node_whose_ck_cannot_install_says_so_in_one_line_and_runs_nothing(
    cluster: dict[str, Any], inputs: Any, ck_repos: Path
) -> None:
    log: list[str] = []
    missing = {**PACKAGES, "model": (MODEL_VAR, "model,onnx,no-such-package")}
    fleet = _fleet(inputs, log, missing)
    assert fleet.bad_nodes.keys() == {cluster["a"]}
    said = fleet.bad_nodes[cluster["a"]]
    assert "cannot install the model package through CK (model,onnx,no-such-package)" in said
    assert "\n" not in said
    results = batch_sweep(fleet, [2])  # once per node: A's point is not run
    assert [r.record["cluster"]["node_id"] for r in results] != [cluster["a"]]
    assert len(results) == 1 and len(fleet.not_run) == 1
    assert "cannot install the model package" in fleet.not_run[0]
