"""``python -m ckvision dataset synth|preprocess|calibration|install-val|detect-val``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "dispatch"]


def _count(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (0 = every core)")
    return int(text)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dataset = sub.add_parser("dataset", help="make, preprocess, download and check datasets")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    synth = dsub.add_parser(
        "synth",
        help="write a SYNTHETIC folder in the ImageNet val layout (JPEGs + val_map.txt) "
        "from the embedded photos; never reported as ImageNet",
    )
    synth.add_argument("--images", type=_count, required=True, help="how many, e.g. 50000")
    synth.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    synth.add_argument("--workers", type=_workers, default=0, help="processes (0 = every core)")
    prep = dsub.add_parser(
        "preprocess",
        help="preprocess an ImageNet-layout folder into the rgb8 cache (every core, "
        "resumable after a kill)",
    )
    prep.add_argument("--source", type=Path, required=True, help="JPEGs + val_map.txt")
    prep.add_argument("--out", type=Path, required=True, help="cache folder")
    prep.add_argument("--count", type=int, default=0, help="first N images (0 = all)")
    prep.add_argument("--side", default="224", help="output side (side.N)")
    prep.add_argument("--crop", default="875", help="crop per mille (crop.N)")
    prep.add_argument("--library", default="pillow", help="pillow | opencv")
    prep.add_argument("--interpolation", default="linear", help="linear|area|cubic|nearest")
    prep.add_argument("--workers", type=_workers, default=0, help="processes (0 = every core)")
    cal = dsub.add_parser(
        "calibration",
        help="check a calibration list + folder (and that it does not overlap a scored "
        "set); with --install-dir, install it",
    )
    cal.add_argument("--list", required=True, dest="list_file", help="calibration list file")
    cal.add_argument("--images", required=True, help="folder the list names files in")
    cal.add_argument(
        "--scored",
        action="append",
        type=Path,
        default=[],
        help="a preprocessed dataset or image folder that is scored (repeatable)",
    )
    cal.add_argument("--install-dir", type=Path, help="copy the list and its images here")
    val = dsub.add_parser(
        "install-val",
        help="download YOUR ILSVRC2012 val archive (checksum checked, resumable) and unpack "
        "it with the aux val.txt labels into INSTALL_DIR/val",
    )
    val.add_argument("--url", required=True, help="the archive's URL (your entitlement)")
    val.add_argument("--install-dir", type=Path, required=True)
    val.add_argument("--labels", required=True, help="aux val.txt (file label per line)")
    val.add_argument("--md5", default="", help="expected md5 (default: the published one)")
    val.add_argument("--sha256", default="")
    val.add_argument("--size", type=int, default=-1, help="expected bytes (0 = unchecked)")


def _given(text: str, what: str) -> Path:
    if not text.strip():
        from ckvision.errors import ConfigError

        raise ConfigError(f"{what} is empty: give a path")
    return Path(text)


def _preprocessing(args: argparse.Namespace) -> object:
    from ckvision.data.variation import ENV_PREFIX, Preprocessing

    return Preprocessing.from_env(
        {
            f"{ENV_PREFIX}SIDE": args.side,
            f"{ENV_PREFIX}CROP": args.crop,
            f"{ENV_PREFIX}LIBRARY": args.library,
            f"{ENV_PREFIX}INTERPOLATION": args.interpolation,
        }
    )


def dispatch(args: argparse.Namespace) -> int:
    action = args.dataset_command
    if action == "synth":
        from ckvision.data.synth import synth_dataset

        synth_dataset(args.out, args.images, workers=args.workers)
    elif action == "preprocess":
        from ckvision.data.imagenet import build_imagenet_cache
        from ckvision.data.variation import Preprocessing

        spec = _preprocessing(args)
        assert isinstance(spec, Preprocessing)
        if args.count < 0:
            from ckvision.errors import ConfigError

            raise ConfigError(f"--count {args.count} must not be negative")
        ds = build_imagenet_cache(
            args.source, args.out, spec, count=args.count, progress=print, workers=args.workers
        )
        print(f"{ds.name} ({ds.kind}): {ds.size} images at {ds.path}")
    elif action == "calibration":
        from ckvision.data.calibration_set import (
            check_no_overlap,
            install_calibration_set,
            read_calibration_list,
            scored_files,
        )

        cal = read_calibration_list(
            _given(args.list_file, "--list (CKVISION_CALIBRATION_LIST)"),
            _given(args.images, "--images (CKVISION_CALIBRATION_IMAGES)"),
        )
        for scored in args.scored:
            check_no_overlap(cal, scored_files(scored))
        if args.install_dir:
            install_calibration_set(cal, args.install_dir)
        print(f"calibration set {args.list_file}: {len(cal)} images, no overlap with scored sets")
    elif action == "install-val":
        from ckvision.data.imagenet_val import (
            VAL_ARCHIVE_MD5,
            VAL_ARCHIVE_SIZE,
            install_imagenet_val,
        )

        custom = bool(args.md5 or args.sha256)
        install_imagenet_val(
            args.url,
            args.install_dir,
            labels=_given(args.labels, "--labels (CKVISION_IMAGENET_VAL_LABELS or the aux dep)"),
            md5=args.md5 if custom else VAL_ARCHIVE_MD5,
            sha256=args.sha256,
            size=args.size if args.size >= 0 else (0 if custom else VAL_ARCHIVE_SIZE),
        )
    return 0
