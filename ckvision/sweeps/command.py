"""``python -m ckvision sweep batch|concurrency|setting|peak``: parse, run, print, write."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ckvision.errors import ConfigError

__all__ = ["add_sweep_parser", "parse", "run_sweep_command", "make_runner", "fingerprint"]


def fingerprint() -> dict[str, Any]:
    """The provenance that decides whether a recorded point can be reused."""
    from ckvision.provenance import collect_provenance

    prov = collect_provenance()
    host: dict[str, Any] = dict(prov["host"])  # type: ignore[call-overload]
    return {
        "versions": prov["versions"],
        "host": {k: host.get(k) for k in ("cpu_model", "cpu_affinity", "hostname")},
    }


def _env_pairs(pairs: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--env {pair!r}: use KEY=VALUE")
        env[key.strip()] = value
    return env


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a ``sweep ...`` command line alone (the CK script entry's call), exactly as
    ``ckvision sweep ...`` would."""
    parser = argparse.ArgumentParser(prog="ckvision")
    add_sweep_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def add_sweep_parser(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="batch / concurrency sweep or peak search, each point "
        "recorded with ck benchmark (resumable)",
    )
    from ckvision.sweeps.points import PROGRAMS

    kinds = sweep.add_subparsers(dest="sweep_kind", required=True, metavar="KIND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--backend", default="onnxruntime", help=" | ".join(PROGRAMS))
    common.add_argument("--tags", default="", help="extra tags shared by every point")
    common.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="program env for every point, e.g. CK_LOADGEN_MIN_DURATION_S=2",
    )
    common.add_argument(
        "--ck-arg",
        action="append",
        default=[],
        dest="ck_args",
        help="extra ck benchmark argument, e.g. --dep_add_tags.weights=fp16",
    )
    common.add_argument("--csv", type=Path, help="also write the table as CSV")
    from ckvision.cluster.command import add_cluster_options

    add_cluster_options(common)  # --cluster ADDRESS ... (issue 21)
    batch = kinds.add_parser("batch", parents=[common], help="Offline, one run per batch size")
    batch.add_argument("--batches", default="1..32", help="1,2,4,8 or 1..32 (powers of two)")
    batch.add_argument("--max-batch", type=int, default=0, help="the model's max batch, if any")
    conc = kinds.add_parser(
        "concurrency", parents=[common], help="MultiStream, N outstanding samples per query"
    )
    conc.add_argument("--levels", default="1..16", help="1,2,4 or 1..16")
    conc.add_argument("--batch", type=int, default=0, help="max batch (default: N)")
    over = kinds.add_parser(
        "setting",
        parents=[common],
        help="one run per value of any `ckvision run` setting, e.g. CK_TRITON_INSTANCES",
    )
    over.add_argument("--setting", required=True, help="its env var, e.g. CK_PREPROCESS_PREFETCH")
    over.add_argument("--values", required=True, help="comma list, e.g. 0,1,2")
    over.add_argument(
        "--scenario",
        default="Offline",
        choices=("Offline", "SingleStream", "MultiStream", "Server"),
    )
    peak = kinds.add_parser(
        "peak", parents=[common], help="max QPS under p99 bounds, equal-spaced and Poisson"
    )
    peak.add_argument("--bounds", default="10,50,100,200", help="p99 bounds in ms")
    peak.add_argument(
        "--arrivals",
        default="linear,exponential",
        help="linear (equal-spaced) and/or exponential (Poisson, LoadGen Server)",
    )
    peak.add_argument(
        "--start-qps",
        type=float,
        default=None,
        help="first rate tried (default: half the probe's throughput)",
    )
    peak.add_argument("--duration-s", type=float, default=5.0, help="seconds per trial")
    peak.add_argument("--max-trials", type=int, default=10, help="trials per bound, at most")
    peak.add_argument("--out-dir", type=Path, default=Path("."), help="where results.json goes")


def make_runner(args: argparse.Namespace, kind: str, log: Callable[[str], None]) -> Any:
    from ckvision.sweeps.points import CkPointRunner

    if getattr(args, "cluster", None):
        from ckvision.cluster.command import make_cluster_runner

        return make_cluster_runner(args, kind, fingerprint(), _env_pairs(args.env), log)
    if hasattr(args, "cluster"):
        from ckvision.cluster.command import check_local_args

        check_local_args(args)
    tags = [f"sweep_{kind}", *(t for t in args.tags.split(",") if t.strip())]
    return CkPointRunner(
        args.backend, tags, _env_pairs(args.env), fingerprint(), ck_args=args.ck_args, log=log
    )


def run_sweep_command(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    from ckvision.analysis.console import format_table
    from ckvision.sweeps import grid
    from ckvision.sweeps.peak import parse_bounds
    from ckvision.sweeps.search import run_peak_search

    kind = args.sweep_kind
    if kind == "batch":
        values = grid.parse_range(args.batches, "batch sizes", args.max_batch)
    elif kind == "concurrency":
        values = grid.parse_range(args.levels, "concurrency levels")
        if args.batch < 0:
            raise ConfigError(f"--batch={args.batch} must be >= 0")
    elif kind == "setting":
        var, texts = grid.parse_setting_values(args.setting, args.values)
    else:
        bounds = parse_bounds(args.bounds)
        arrivals = [a.strip() for a in args.arrivals.split(",") if a.strip()]
        if not arrivals or any(a not in ("linear", "exponential") for a in arrivals):
            raise ConfigError(f"--arrivals={args.arrivals!r}: use linear and/or exponential")
        if args.duration_s <= 0 or args.max_trials < 1:
            raise ConfigError("--duration-s must be > 0 and --max-trials >= 1")
        if args.start_qps is not None and args.start_qps <= 0:
            raise ConfigError(f"--start-qps={args.start_qps} must be > 0")
    runner = make_runner(args, kind, log)
    try:
        if kind == "peak":
            run_peak_search(
                runner,
                bounds,
                args.out_dir,
                start_qps=args.start_qps,
                duration_s=args.duration_s,
                arrivals=arrivals,
                max_trials=args.max_trials,
                log=log,
            )
            log(f"results: {args.out_dir / 'results.json'}")
            return 0
        if kind == "batch":
            results = grid.batch_sweep(runner, values)
        elif kind == "setting":
            results = grid.setting_sweep(runner, var, texts, args.scenario)
        else:
            results = grid.concurrency_sweep(runner, values, args.batch or None)
    except KeyboardInterrupt:
        log(
            f"sweep: interrupted; the {len(runner.done)} finished points stay recorded "
            "(run the same command again to resume)"
        )
        raise
    from ckvision.config import SETTINGS

    column = next((s.name for s in SETTINGS.values() if kind == "setting" and s.env == var), None)
    table = grid.sweep_table(results, kind, column)
    log(format_table(table))
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
        log(f"table: {args.csv}")
    for line in runner.not_run:  # a cluster's points that no node ran (one line each)
        log(line)
    return 1 if runner.not_run else 0
