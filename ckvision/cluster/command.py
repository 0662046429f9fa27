"""``ckvision sweep batch|concurrency|peak --cluster ADDRESS``: the options and the runner."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ckvision.errors import CkVisionError, ConfigError

__all__ = ["add_cluster_options", "make_cluster_runner", "check_local_args"]


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("on a Ray cluster (pip install 'ckvision[cluster]')")
    group.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run each point as a Ray task on this cluster: auto, HOST:PORT or ray://HOST:PORT",
    )
    group.add_argument(
        "--each-node",
        action="store_true",
        help="run every point once on every node (fleet comparison; rows per node)",
    )
    group.add_argument(
        "--shared-nodes",
        action="store_true",
        help="let two points share a node at once (default: one point per node at a time)",
    )
    group.add_argument(
        "--gpus-per-point",
        type=int,
        default=None,
        help="whole GPUs per point (default: 1 for GPU points, 0 otherwise)",
    )
    group.add_argument(
        "--model", type=Path, help="model file to ship to the nodes (default: the CK env's)"
    )
    group.add_argument(
        "--dataset", type=Path, help="preprocessed dataset dir to ship (default: the CK env's)"
    )


def _check(args: argparse.Namespace, kind: str) -> None:
    if args.ck_args:
        raise ConfigError("--ck-arg is for ck benchmark; with --cluster the nodes run ckvision")
    if kind == "peak":
        if args.each_node:
            raise ConfigError("--each-node: run peak on one node at a time (--cluster only)")
        if "linear" in [a.strip() for a in args.arrivals.split(",")]:
            raise ConfigError(
                "--cluster: the equal-spaced (linear) search runs in this process; "
                "use --arrivals exponential on a cluster"
            )


def _ck_inputs(args: argparse.Namespace) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """The env with the model and dataset of this machine's CK packages filled in where
    neither an option nor the env names them (what ``ck benchmark`` would resolve), and
    those packages: role -> (env var, tags), for the nodes' own CK."""
    from ckvision.ck.deps import installed_env_value
    from ckvision.program import DATASET_ENV, DATASET_TAGS, MODEL_ENV

    env = dict(os.environ)
    model_var, model_tags = MODEL_ENV.get(args.backend, MODEL_ENV["onnxruntime"])
    wanted = [
        ("model", model_var, model_tags, args.model),
        ("dataset", DATASET_ENV, DATASET_TAGS, args.dataset),
    ]
    packages: dict[str, tuple[str, str]] = {}
    for role, var, tags, given in wanted:
        option = f"--{role}"
        if given is None and not env.get(var):
            try:
                value = installed_env_value(tags, var)
            except CkVisionError as err:
                raise ConfigError(f"{option} not given and CK cannot tell: {err}") from None
            if value:
                env[var] = value
                packages[role] = (var, tags)
    return env, packages


def make_cluster_runner(
    args: argparse.Namespace,
    kind: str,
    fingerprint: dict[str, Any],
    env: dict[str, str],
    log: Callable[[str], None],
) -> Any:
    from ckvision.cluster.connection import check_address, connect
    from ckvision.cluster.runner import ClusterPointRunner
    from ckvision.program import resolve_inputs

    _check(args, kind)
    check_address(args.cluster)
    ck_env, packages = _ck_inputs(args)
    inputs = resolve_inputs(ck_env, args.backend, args.model, args.dataset)
    tags = [f"sweep_{kind}", *(t for t in args.tags.split(",") if t.strip())]
    runner = ClusterPointRunner(
        args.backend,
        tags,
        env,
        fingerprint,
        inputs,
        each_node=args.each_node,
        shared_nodes=args.shared_nodes,
        gpus_per_point=args.gpus_per_point,
        packages=packages,
        log=log,
    )
    runner.attach(connect(args.cluster))
    return runner


def check_local_args(args: argparse.Namespace) -> None:
    """Without --cluster, the cluster-only options are refused in one line."""
    given = [args.each_node, args.shared_nodes, args.model, args.dataset]
    if any(given) or args.gpus_per_point is not None:
        raise ConfigError(
            "--each-node, --shared-nodes, --gpus-per-point, --model and --dataset need --cluster"
        )
