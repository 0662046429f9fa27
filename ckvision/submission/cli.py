"""``python -m ckvision submission build|check|run``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckvision.program import ProgramInputs
    from ckvision.submission.cluster import SubmissionOnCluster

__all__ = ["add_parser", "dispatch"]

DEFAULT_BUFFER = 1024  # MLPerf's performance sample count for ResNet50 (the checker's minimum)


def _tree_options(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--division", choices=("open", "closed"), default="open")
    parser.add_argument("--submitter", required=required, help="your organisation's name")
    parser.add_argument("--system", required=required, help="system name (systems/<name>.json)")
    parser.add_argument(
        "--system-desc",
        type=Path,
        required=required,
        help="JSON system description you edit (merged over what the runs recorded)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output tree")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    top = sub.add_parser("submission", help="MLPerf Inference v6.1 submission: build|check|run")
    ssub = top.add_subparsers(dest="submission_command", required=True, metavar="ACTION")

    build = ssub.add_parser("build", help="write the submission tree from recorded entries")
    build.add_argument(
        "entries", nargs="*", type=Path, help="experiment entry dirs or folders of entries"
    )
    build.add_argument("--tags", default="", help="only entries with all these tags")
    build.add_argument("--out", type=Path, required=True, help="submission folder to write")
    _tree_options(build)

    check = ssub.add_parser("check", help="run MLPerf's submission checker (v6.1) on a tree")
    check.add_argument("dir", type=Path)
    check.add_argument("--inference-src", type=Path, help="mlcommons/inference checkout")
    check.add_argument("--submitter", default="", help="only this submitter")
    check.add_argument(
        "--skip-dataset-size-check",
        action="store_true",
        help="the accuracy run is not the full dataset (e.g. the sample set)",
    )
    check.add_argument("--csv", type=Path, help="keep the checker's CSV here")

    source = ssub.add_parser(
        "install-source", help="git clone mlcommons/inference at a pinned commit (the checker)"
    )
    source.add_argument("--install-dir", type=Path, required=True)
    source.add_argument("--url", default=None, help="git URL, file:// URL or local path")
    source.add_argument("--commit", default=None, help="commit to check out (pinned default)")

    run = ssub.add_parser(
        "run", help="accuracy, performance, TEST01, TEST04 per scenario; then build + check"
    )
    from ckvision.config import SETTINGS

    run.add_argument(
        "--work-dir",
        type=Path,
        required=True,
        help="where the runs' logs (WORK/runs) and CK entries (WORK/experiment) go; run the "
        "same command again to resume: every valid recorded run is reused",
    )
    run.add_argument(
        "--scenarios",
        default="Offline,SingleStream",
        help="comma-separated: Offline, SingleStream, MultiStream, Server (default: "
        "Offline,SingleStream); each gets accuracy, performance, TEST01 and TEST04",
    )
    run.add_argument("--backend", default=None, help="onnxruntime (default), pytorch, ...")
    run.add_argument("--model", type=Path, help="model file (default: the CK model dep's env)")
    run.add_argument("--dataset", type=Path, help="preprocessed dataset dir (default: CK env)")
    for name in ("threads", "workers", "batch_size", "target_qps", "target_latency_ms"):
        spec = SETTINGS[name]
        run.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            help=f"{spec.help} ({spec.env}; unset: {_UNSET[name]})",
        )
    run.add_argument("--buffer-size", default=str(DEFAULT_BUFFER), help="performance samples")
    run.add_argument(
        "--min-duration-s",
        default=None,
        help="performance test duration; default the official 600 s (shorter: tests only, "
        "the checker then reports each log)",
    )
    run.add_argument("--tags", default="", help="extra tags for the recorded entries")
    run.add_argument("--out", type=Path, help="submission folder (default WORK/submission)")
    run.add_argument("--inference-src", type=Path, help="mlcommons/inference checkout")
    run.add_argument(
        "--skip-dataset-size-check",
        action="store_true",
        help="passed to MLPerf's checker: accuracy on fewer than ImageNet's 50,000 images "
        "(open division only; say so in the README)",
    )
    run.add_argument("--no-build", action="store_true", help="only make the runs")
    on = run.add_argument_group("on a Ray cluster (pip install 'ckvision[cluster]')")
    on.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="make the runs as Ray tasks on ONE node of this cluster: auto, HOST:PORT or "
        "ray://HOST:PORT (recorded here)",
    )
    on.add_argument(
        "--node",
        default="",
        help="the node (id prefix, host name or IP) that runs them all (default: where the "
        "first run lands)",
    )
    on.add_argument("--gpus-per-point", type=int, default=None, help="whole GPUs per run")
    _tree_options(run, required=False)


_UNSET = {
    "threads": "auto-tuned",
    "workers": "auto-tuned",
    "batch_size": "auto-tuned",
    "target_qps": "LoadGen's default; Offline issues one query of 1.1 x 600 s x this many "
    "samples, so set it near the rate a short run measured",
    "target_latency_ms": "LoadGen's default",
}


def _tags(text: str) -> list[str]:
    from ckvision.sweeps.points import check_tags

    return check_tags([t.strip() for t in text.split(",") if t.strip()])


def dispatch(args: argparse.Namespace) -> int:
    action = args.submission_command
    if action == "build":
        from ckvision.submission.build import build_submission, select_runs

        runs = select_runs(args.entries, _tags(args.tags))
        build_submission(
            runs,
            args.out,
            division=args.division,
            submitter=args.submitter,
            system=args.system,
            system_desc=args.system_desc,
            force=args.force,
        )
        return 0
    if action == "check":
        from ckvision.submission.check import run_checker

        return run_checker(
            args.dir,
            inference_src=args.inference_src,
            submitter=args.submitter,
            skip_dataset_size_check=args.skip_dataset_size_check,
            csv=args.csv,
        )
    if action == "install-source":
        from ckvision.submission.source import DEFAULT_COMMIT, DEFAULT_URL, install_source

        install_source(args.url or DEFAULT_URL, args.commit or DEFAULT_COMMIT, args.install_dir)
        return 0
    return _run(args)


def _cluster(
    args: argparse.Namespace,
    backend: str,
    inputs: ProgramInputs,
    work: Path,
    tags: list[str],
    explicit: set[str],
) -> SubmissionOnCluster | None:
    """The cluster executor with --cluster (connected, inputs on the nodes); else None."""
    from ckvision.errors import ConfigError

    if not args.cluster:
        if args.node or args.gpus_per_point is not None:
            raise ConfigError("--node and --gpus-per-point need --cluster")
        return None
    from ckvision.cluster import check_address, connect
    from ckvision.submission.cluster import SubmissionOnCluster

    check_address(args.cluster)
    executor = SubmissionOnCluster(
        backend,
        inputs,
        experiment_dir=work / "experiment",
        tags=tags,
        explicit=explicit,
        node=args.node.strip(),
        gpus_per_point=args.gpus_per_point,
    )
    executor.attach(connect(args.cluster))
    return executor


def _run(args: argparse.Namespace) -> int:
    from ckvision.config import RunConfig
    from ckvision.errors import ConfigError
    from ckvision.program import resolve_inputs
    from ckvision.submission.runner import (
        OFFICIAL_MIN_DURATION_S,
        check_scenarios,
        plan_runs,
        run_plans,
    )
    from ckvision.tuning import autotune, explicit_settings

    scenarios = check_scenarios(args.scenarios)
    tags = _tags(args.tags)
    if not args.no_build:
        missing = [n for n in ("submitter", "system", "system_desc") if not getattr(args, n)]
        if missing:
            flags = ", ".join("--" + n.replace("_", "-") for n in missing)
            raise ConfigError(f"submission run builds the tree: give {flags} (or --no-build)")
    overrides = {
        name: getattr(args, name)
        for name in ("threads", "workers", "batch_size", "target_qps", "target_latency_ms")
    }
    overrides["buffer_size"] = args.buffer_size
    overrides["min_duration_s"] = args.min_duration_s or str(OFFICIAL_MIN_DURATION_S)
    overrides["backend"] = args.backend
    base = RunConfig.from_env(os.environ, overrides)
    if base.min_duration_s is not None and base.min_duration_s < OFFICIAL_MIN_DURATION_S:
        print(
            f"submission: note: --min-duration-s {base.min_duration_s:g} is below the official "
            f"{OFFICIAL_MIN_DURATION_S:g} s; the checker will report every performance log"
        )
    inputs = resolve_inputs(os.environ, base.backend, args.model, args.dataset)
    explicit = explicit_settings(os.environ, overrides)

    def tune(config: RunConfig) -> tuple[RunConfig, dict[str, object] | None]:
        return autotune(config, inputs.model_path, inputs.contract, inputs.dataset_dir, explicit)

    work = args.work_dir.resolve()
    executor = _cluster(args, base.backend, inputs, work, tags, explicit)
    run_plans(plan_runs(base, scenarios), inputs, work, tags=tags, tune=tune, executor=executor)
    if args.no_build:
        return 0
    from ckvision.submission.build import build_submission, select_runs
    from ckvision.submission.check import run_checker

    out = (args.out or work / "submission").resolve()
    runs = select_runs([work / "experiment"], ["submission", *tags])
    build_submission(
        runs,
        out,
        division=args.division,
        submitter=args.submitter,
        system=args.system,
        system_desc=args.system_desc,
        force=args.force,
        scenarios=[s.value for s in scenarios],
    )
    return run_checker(
        out,
        inference_src=args.inference_src,
        submitter=args.submitter,
        skip_dataset_size_check=args.skip_dataset_size_check,
    )
