"""``submission run --cluster`` (issue 21) on a real local Ray cluster of 2 nodes (1 CPU and
the exclusive slot each, their own input caches), with the short real runs of
tests/test_submission.py: every run on one node, recorded here, reused on a rerun.
Every address is 127.0.0.1 (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, shared/ray.md).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only, before Ray starts
ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'ckvision[cluster]'")

from ray.cluster_utils import Cluster  # noqa: E402

from ckvision.cli import main  # noqa: E402
from ckvision.cluster import SLOT  # noqa: E402
from ckvision.experiments.entries import find_entries, iter_runs  # noqa: E402
from tests.test_submission import RUN_ARGS, assets  # noqa: E402, F401 - the module fixture

ENTRIES = [f"submission.tiny.offline.{k}" for k in ("accuracy", "performance", "test01", "test04")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    caches = tmp_path_factory.mktemp("node-caches")
    c = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "resources": {SLOT: 1},
            "env_vars": {"CKVISION_CLUSTER_CACHE": str(caches / "head")},
        },
    )
    c.add_node(
        num_cpus=1,
        resources={SLOT: 1},
        env_vars={"CKVISION_CLUSTER_CACHE": str(caches / "worker")},
    )
    c.wait_for_nodes()
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def _submit(work: Path, inputs: dict[str, Path], address: str, *extra: str) -> int:
    return main(
        [
            "submission",
            "run",
            f"--work-dir={work}",
            f"--model={inputs['model']}",
            f"--dataset={inputs['data']}",
            *RUN_ARGS,
            "--scenarios=Offline",
            "--no-build",
            f"--cluster={address}",
            *extra,
        ]
    )


def _runs(work: Path) -> dict[str, list[Any]]:
    return {
        name: [r.record for r in iter_runs(find_entries([work / "experiment" / name]))]
        for name in ENTRIES
    }


@pytest.mark.timeout(240)
def test_submission_runs_on_one_node_recorded_here_and_reused(
    cluster: Cluster,
    assets: dict[str, Path],  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    os.environ["CK_PROGRESS"] = "off"
    work = tmp_path / "work"
    assert _submit(work, assets, cluster.address) == 0
    first = _runs(work)
    assert all(len(records) == 1 for records in first.values()), first.keys()
    nodes = {records[0]["cluster"]["node_id"] for records in first.values()}
    assert len(nodes) == 1  # one system: every run on the node the first one landed on
    record = first["submission.tiny.offline.accuracy"][0]
    assert record["accuracy"] and record["logs"]  # the logs a submission tree needs
    assert record["provenance"]["host"]["hostname"] == record["cluster"]["hostname"]
    assert record["config"]["scenario"] == "Offline"
    assert first["submission.tiny.offline.test01"][0]["config"]["compliance_test"] == "TEST01"
    out = capsys.readouterr().out
    assert "every run of this submission on node" in out

    valid = [
        name
        for name, records in first.items()
        if records[0]["accuracy"] or (records[0]["loadgen"] or {}).get("result_validity") == "VALID"
    ]
    assert _submit(work, assets, cluster.address) == 0
    out = capsys.readouterr().out
    again = _runs(work)
    for name in valid:  # a valid recorded run is reused, as locally
        assert f"reusing the valid run recorded in {work / 'experiment' / name}" in out
        assert len(again[name]) == 1
    assert {r["cluster"]["node_id"] for rs in again.values() for r in rs} == nodes


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--node=nosuchnode"], "--node 'nosuchnode': no ready node of the cluster match"),
        (["--node", socket.gethostname()], "--node .*: 2 nodes of the cluster match"),
        (["--gpus-per-point=-1"], "--gpus-per-point=-1"),
    ],
)
def test_submission_cluster_errors_are_one_line(
    cluster: Cluster,
    assets: dict[str, Path],  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    import re

    assert _submit(tmp_path, assets, cluster.address, *extra) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ckvision: error: "), err
    assert re.search(message, err[0]), err[0]


def test_node_without_cluster_is_refused(
    assets: dict[str, Path],  # noqa: F811 - the imported fixture
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["submission", "run", f"--work-dir={tmp_path}", "--no-build", "--node=x"]
    assert main([*argv, f"--model={assets['model']}", f"--dataset={assets['data']}"]) != 0
    assert "--node and --gpus-per-point need --cluster" in capsys.readouterr().err
