"""The ``ckvision`` command line (also ``python -m ckvision``).

Every user error is one line, ``ckvision: error: ...``, and a non-zero exit status;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ckvision.config import ENV_VARS
from ckvision.errors import CkVisionError

__all__ = ["main", "build_parser"]

_EPILOG = "Every run option can also come from its CK env var; a flag wins over the env var."


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    from ckvision.backends.registry import backend_names

    parser.add_argument("--backend", help=f"{' | '.join(backend_names())} (CK_BACKEND)")
    parser.add_argument("--model", type=Path, help="model file (default: the CK model dep's env)")
    parser.add_argument("--dataset", type=Path, help="preprocessed dataset dir (default: CK env)")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where logs go")
    for name, (var, help_text) in ENV_VARS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"{help_text} ({var})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ckvision", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", help="run one LoadGen test (what the CK programs run)", epilog=_EPILOG
    )
    _add_run_options(run)
    run.add_argument("--quiet", action="store_true", help="no per-second progress")

    model = sub.add_parser("install-model", help="export/download a model into a directory")
    model.add_argument("--name", required=True, help="efficientnet-lite0 | resnet50")
    model.add_argument("--install-dir", type=Path, required=True)
    model.add_argument("--tags", default="")

    data = sub.add_parser(
        "install-dataset",
        help="preprocess a dataset into the rgb8 cache of the variation in "
        "CKVISION_DATASET_* (set by the package's variation tags)",
    )
    data.add_argument("--kind", required=True, choices=("sample", "imagenet"))
    data.add_argument("--install-dir", type=Path, required=True)
    data.add_argument("--count", type=int, default=0, help="images to take; 0 = all")
    data.add_argument("--source", default="", help="ImageNet val folder (kind imagenet)")

    engine = sub.add_parser("build-engine", help="convert an ONNX model to a TensorRT engine")
    engine.add_argument("--onnx", type=Path, required=True)
    engine.add_argument("--install-dir", type=Path, required=True)
    engine.add_argument("--model", required=True)
    engine.add_argument("--precision", required=True, help="fp32 | fp16 | int8")
    engine.add_argument("--max-batch", required=True, help="engine max batch (N of maxbatch.N)")
    engine.add_argument("--workspace-mib", type=int, default=4096)
    engine.add_argument("--calibration-dataset", default="", help="preprocessed dataset (int8)")
    engine.add_argument("--calibration-count", type=int, default=500)

    results = sub.add_parser("results", help="table of recorded CK experiment entries")
    results.add_argument(
        "entries",
        nargs="*",
        type=Path,
        help="experiment entry dirs (default: all in $CK_REPOS/local/experiment)",
    )
    results.add_argument("--tags", default="", help="only entries with all these tags")
    results.add_argument("--csv", type=Path, help="also write the full table as CSV")
    results.add_argument("--plot", type=Path, help="also write a PNG plot")

    from ckvision.sweeps.command import add_sweep_parser

    add_sweep_parser(sub)  # sweep batch|concurrency|peak (issue 9)
    report = sub.add_parser("report", help="self-contained HTML report of recorded runs")
    report.add_argument("--tags", required=True, help="entries with all these tags")
    report.add_argument("--compare", default="", help="A/B: a second tag set, ratios B/A")
    report.add_argument("--out", type=Path, default=Path("report.html"))
    report.add_argument(
        "--results",
        type=Path,
        action="append",
        default=[],
        help="peak-search results.json to include",
    )
    report.add_argument("--png-dir", type=Path, help="also write the plots as PNG here")
    report.add_argument("--csv", type=Path, help="also write the runs as CSV")

    sub.add_parser("ck-setup", help="register this repo with ck, detect software, install packages")
    deps = sub.add_parser(
        "ck-deps",
        help="which env entry each dependency of a CK program "
        "resolves to; one line if CK would have to ask",
    )
    deps.add_argument("program", help="e.g. program:image-classification-onnxruntime-loadgen-py")
    deps.add_argument(
        "--dep-add-tags",
        action="append",
        default=[],
        metavar="NAME=TAGS",
        help="as ck's --dep_add_tags.NAME=TAGS (repeatable)",
    )
    install = sub.add_parser(
        "ck-install",
        help="install this repo's package selected by TAGS "
        "(checked first: an unknown tag is one line, nothing installed)",
    )
    install.add_argument("tags", help="e.g. model,tensorrt,resnet,converted-from-onnx,fp16")
    demo = sub.add_parser("demo", help="ck-setup, then the four recorded demo runs and a table")
    demo.add_argument("--skip-setup", action="store_true")
    demo.add_argument(
        "--report",
        type=Path,
        default=Path("demo-report.html"),
        help="where the HTML report of the four runs goes (default: ./demo-report.html)",
    )
    from ckvision.triton.commands import add_commands as add_triton_commands

    add_triton_commands(sub)
    from ckvision.containers.cli import add_parser as add_docker_parser

    add_docker_parser(sub)
    from ckvision.submission.cli import add_parser as add_submission_parser

    add_submission_parser(sub)  # submission build|check|run (issue 17)
    from ckvision.quantize.cli import add_parser as add_quantize_parser

    add_quantize_parser(sub)  # quantize-model (issue 19: INT8 on the CPU)
    from ckvision.data.commands import add_parser as add_dataset_parser

    add_dataset_parser(sub)  # dataset synth|preprocess|calibration|... (issue 19)
    return parser


def _run(args: argparse.Namespace) -> int:
    from ckvision.analysis.console import print_run
    from ckvision.program import run

    overrides = {name: getattr(args, name) for name in ENV_VARS}
    overrides["backend"] = args.backend
    if args.quiet:
        overrides["progress"] = "off"
    record = run(os.environ, overrides, args.output_dir, model=args.model, dataset=args.dataset)
    print_run(record)
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "quantize-model":
        from ckvision.quantize.cli import dispatch as quantize_dispatch

        return quantize_dispatch(args)
    if args.command.startswith("triton-"):
        from ckvision.triton.commands import dispatch as triton_dispatch

        return triton_dispatch(args)
    if args.command == "install-model":
        from ckvision.models.install import install_model

        install_model(
            args.name,
            args.install_dir,
            tags=args.tags,
            mirror=os.environ.get("CKVISION_MODEL_MIRROR", ""),
        )
    elif args.command == "install-dataset":
        from ckvision.data.install import install_dataset

        source = Path(args.source) if args.source else None
        install_dataset(args.kind, args.install_dir, os.environ, source=source, count=args.count)
    elif args.command == "build-engine":
        from ckvision.ck.hooks.engines import install_engine

        install_engine(args)
    elif args.command == "results":
        from ckvision.analysis.console import print_results

        print_results(args.entries, tags=args.tags, csv=args.csv, plot=args.plot)
    elif args.command == "sweep":
        from ckvision.sweeps.command import run_sweep_command

        return run_sweep_command(args)
    elif args.command == "report":
        from ckvision.analysis.report import write_report

        write_report(
            args.tags,
            args.out,
            compare=args.compare,
            results=args.results,
            png_dir=args.png_dir,
            csv=args.csv,
        )
    elif args.command == "ck-setup":
        from ckvision.ck.setup import setup_ck

        setup_ck()
    elif args.command == "ck-deps":
        from ckvision.ck.deps import check_program_deps, parse_dep_add_tags

        chosen = check_program_deps(args.program, parse_dep_add_tags(args.dep_add_tags))
        for name, uid in chosen.items():
            print(f"{name}: env:{uid}")
    elif args.command == "ck-install":
        from ckvision.ck.deps import install

        install(args.tags)
    elif args.command == "demo":
        from ckvision.demo import run_demo

        run_demo(skip_setup=args.skip_setup, report=args.report)
    elif args.command == "docker":
        from ckvision.containers.cli import dispatch as docker_dispatch

        return docker_dispatch(args)
    elif args.command == "submission":
        from ckvision.submission.cli import dispatch as submission_dispatch

        return submission_dispatch(args)
    elif args.command == "dataset":
        from ckvision.data.commands import dispatch as dataset_dispatch

        return dataset_dispatch(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except CkVisionError as err:
        print(f"ckvision: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("ckvision: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
