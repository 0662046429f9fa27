"""The ILSVRC2012 validation archive -> the ImageNet val folder, the CK way.

ImageNet needs a login, so the archive's URL is the user's to give (their entitlement);
we check the published checksum, download with resume and progress
(:func:`ckvision.models.download.download`, the one downloader), unpack the 50,000 JPEGs
into ``val/`` beside the labels from ck-env's ``dataset.imagenet.aux`` (the Caffe
ILSVRC12 archive's ``val.txt``, which MLPerf's ``val_map.txt`` equals), and leave a
folder ck-env's ``soft:dataset.imagenet.val`` detects (``ILSVRC2012_val_00000001.JPEG``).

Everything is checked before anything is installed: the labels file before the
download, the archive's checksum before unpacking, every archive member (plain files
with plain names only: no links, no paths) while unpacking into a temporary folder, and
that every labelled image arrived before that folder is renamed into place. The URL is
never recorded (it may carry a token).
"""

from __future__ import annotations

import re
import shutil
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path

from ckvision.data.imagenet import _parse_line, read_val_map
from ckvision.errors import ConfigError, DataError
from ckvision.fsutil import atomic_dir, atomic_write_json, check_free_space

__all__ = [
    "install_imagenet_val",
    "resolve_val_source",
    "VAL_ARCHIVE",
    "VAL_ARCHIVE_MD5",
    "VAL_ARCHIVE_SIZE",
    "VAL_DIR",
]

VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
VAL_ARCHIVE_MD5 = "29b22e2961454d5413ddabcf34fc5622"  # as published with the archive
VAL_ARCHIVE_SIZE = 6_744_924_160
VAL_DIR = "val"
MARKER = "ckvision-imagenet-val.json"
_MEMBER = re.compile(r"^[A-Za-z0-9_.-]{1,200}\.(JPEG|jpeg|jpg|JPG)$")


def _read_labels(labels: Path) -> list[tuple[str, int]]:
    labels = Path(labels)
    try:
        text = labels.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the ImageNet labels {labels}: {err}") from err
    items = [
        _parse_line(labels, number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]
    if not items:
        raise DataError(f"the ImageNet labels {labels} list no images")
    return items


def install_imagenet_val(
    url: str,
    install_dir: Path,
    *,
    labels: Path,
    md5: str = VAL_ARCHIVE_MD5,
    sha256: str = "",
    size: int = VAL_ARCHIVE_SIZE,
    keep_archive: bool = False,
    log: Callable[[str], None] = print,
    free_bytes: int | None = None,
) -> Path:
    """Download ``url`` (the ILSVRC2012 val tar), verify, unpack into
    ``install_dir/val`` with ``val_map.txt`` from ``labels``; returns that folder."""
    from ckvision.models.download import download

    if not url.startswith(("https://", "http://", "file:")):
        raise ConfigError(
            "give the URL of your ILSVRC2012 validation archive (http://, https:// or "
            "file:), e.g. --env.CKVISION_IMAGENET_VAL_URL=https://.../ILSVRC2012_img_val.tar"
        )
    items = _read_labels(labels)
    install_dir = Path(install_dir)
    dest = install_dir / VAL_DIR
    archive = install_dir / VAL_ARCHIVE
    partial = archive.with_name(f".{archive.name}.partial")
    have = partial.stat().st_size if partial.is_file() else 0
    check_free_space(install_dir, 2 * size - have, "the ImageNet validation set", free_bytes)
    download(url, archive, md5=md5, sha256=sha256, size=size, progress=log, resume=True,
             error=DataError)  # fmt: skip
    log(f"unpacking {archive.name} into {dest}")
    with atomic_dir(dest) as tmp:
        count = _unpack(archive, tmp)
        (tmp / "val_map.txt").write_text(
            "".join(f"{file} {label}\n" for file, label in items), encoding="utf-8"
        )
        listed = read_val_map(tmp)  # every labelled image must be in the archive
        atomic_write_json(
            tmp / MARKER,
            {"archive": VAL_ARCHIVE, "md5": md5, "sha256": sha256, "images": count,
             "labelled": len(listed), "labels": str(labels)},
        )  # fmt: skip
    if not keep_archive:
        archive.unlink()
    log(f"ImageNet validation set: {len(listed)} labelled images at {dest}")
    return dest


def _unpack(archive: Path, dest: Path) -> int:
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                if member.isdir():
                    continue
                name = member.name
                if not member.isfile() or not _MEMBER.match(name):
                    kind = "a link" if member.issym() or member.islnk() else repr(name[:80])
                    raise DataError(
                        f"{archive.name} holds {kind}, not an ILSVRC2012_val_*.JPEG image; "
                        "nothing was installed"
                    )
                target = dest / name
                if target.exists():
                    raise DataError(f"{archive.name} holds {name} twice; nothing was installed")
                source = tar.extractfile(member)
                if source is None:
                    raise DataError(f"{archive.name}: cannot read {name}; nothing was installed")
                with source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
                count += 1
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"cannot unpack {archive.name}: {err}; nothing was installed") from err
    if not count:
        raise DataError(f"{archive.name} holds no images; nothing was installed")
    return count


def resolve_val_source(
    env: Mapping[str, str], source: Path | None
) -> tuple[Path | None, Path | None]:
    """(image folder, labels file) for the preprocessing package: the folder given
    (``IMAGENET_VAL_DIR``), else the ``dataset.imagenet.val`` dependency's
    ``CK_ENV_DATASET_IMAGENET_VAL`` (a ck-mlperf user's installed ImageNet); the labels
    are the folder's ``val_map.txt``, else the ``dataset.imagenet.aux`` dependency's
    ``CK_CAFFE_IMAGENET_VAL_TXT``."""
    folder = source or (
        Path(env["CK_ENV_DATASET_IMAGENET_VAL"]) if env.get("CK_ENV_DATASET_IMAGENET_VAL") else None
    )
    if folder is None:
        return None, None
    if (folder / "val_map.txt").is_file():
        return folder, None
    aux = env.get("CK_CAFFE_IMAGENET_VAL_TXT", "")
    return folder, (Path(aux) if aux else None)
