"""The ILSVRC2012 val archive download + unpack, against a local HTTP server on 127.0.0.1
serving a small archive, a wrong one and a truncated one; then preprocessing from the
installed folder with the aux labels, as the CK package chain does."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from local_http import serve
from PIL import Image

from ckvision.data.imagenet import read_val_map
from ckvision.data.imagenet_val import MARKER, VAL_ARCHIVE, install_imagenet_val
from ckvision.data.install import install_dataset
from ckvision.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
COUNT = 20


def _jpeg(i: int) -> bytes:
    rng = np.random.default_rng(i)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (30 + i, 40, 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def _tar(members: dict[str, bytes], link: str = "") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return out.getvalue()


NAMES = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, COUNT + 1)]
GOOD = _tar({name: _jpeg(i) for i, name in enumerate(NAMES)})
MD5 = hashlib.md5(GOOD, usedforsecurity=False).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    truncate_once: set[str] = set()
    requests: list[tuple[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        cls = type(self)
        cls.requests.append((self.path, self.headers.get("Range", "")))
        data = cls.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get("Range", "")
        if wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[6:-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in cls.truncate_once:
            cls.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.files = {
        "/good.tar": GOOD,
        "/wrong.tar": _tar({NAMES[0]: b"something else"}),
        "/truncated.tar": GOOD,
        "/link.tar": _tar({NAMES[0]: _jpeg(0)}, link="ILSVRC2012_val_00000002.JPEG"),
        "/path.tar": _tar({"../ILSVRC2012_val_00000001.JPEG": _jpeg(0)}),
    }
    _Handler.truncate_once = {"/truncated.tar"}
    _Handler.requests = []
    with serve(_Handler) as url:
        yield url


@pytest.fixture()
def aux_val_txt(tmp_path: Path) -> Path:
    """ck-env's dataset.imagenet.aux val.txt: '<file> <label>' per image."""
    path = tmp_path / "aux" / "val.txt"
    path.parent.mkdir()
    path.write_text("".join(f"{name} {i * 37 % 1000}\n" for i, name in enumerate(NAMES)))
    return path


def _install(url: str, where: Path, labels: Path, md5: str = MD5) -> Path:
    return install_imagenet_val(url, where, labels=labels, md5=md5, size=0, log=lambda _m: None)


@pytest.mark.timeout(60)
def test_good_archive_is_verified_unpacked_and_labelled(
    server: str, tmp_path: Path, aux_val_txt: Path
) -> None:
    token_url = f"{server}/good.tar?token=SECRET"
    _Handler.files["/good.tar?token=SECRET"] = GOOD
    folder = _install(token_url, tmp_path / "inst", aux_val_txt)
    assert folder == tmp_path / "inst" / "val"
    items = read_val_map(folder)
    assert [f for f, _ in items] == NAMES and items[1][1] == 37
    assert (folder / NAMES[3]).read_bytes() == _jpeg(3)
    assert sorted(p.name for p in (tmp_path / "inst").iterdir()) == ["val"]  # archive gone
    assert "SECRET" not in (folder / MARKER).read_text()  # the URL is never recorded


@pytest.mark.timeout(60)
def test_wrong_archive_installs_nothing(server: str, tmp_path: Path, aux_val_txt: Path) -> None:
    with pytest.raises(DataError, match=r"checksum mismatch for .*/wrong\.tar"):
        _install(f"{server}/wrong.tar", tmp_path / "inst", aux_val_txt)
    assert list((tmp_path / "inst").iterdir()) == []  # no archive, no partial, no val/


@pytest.mark.timeout(60)
def test_truncated_download_resumes(server: str, tmp_path: Path, aux_val_txt: Path) -> None:
    inst = tmp_path / "inst"
    with pytest.raises(DataError, match=r"truncated|IncompleteRead|run again to resume"):
        _install(f"{server}/truncated.tar", inst, aux_val_txt)
    partial = inst / f".{VAL_ARCHIVE}.partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(GOOD) and not (inst / "val").exists()
    folder = _install(f"{server}/truncated.tar", inst, aux_val_txt)
    assert _Handler.requests[-1] == ("/truncated.tar", f"bytes={kept}-")  # only the rest
    assert len(read_val_map(folder)) == COUNT and not partial.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "why"), [("link", "a link"), ("path", r"'\.\./ILSVRC")])
def test_hostile_archive_members_are_refused(
    server: str, tmp_path: Path, aux_val_txt: Path, name: str, why: str
) -> None:
    md5 = hashlib.md5(_Handler.files[f"/{name}.tar"], usedforsecurity=False).hexdigest()
    with pytest.raises(DataError, match=rf"holds {why}.*nothing was installed"):
        _install(f"{server}/{name}.tar", tmp_path / "inst", aux_val_txt, md5=md5)
    assert not (tmp_path / "inst" / "val").exists()
    assert not (tmp_path.parent / "etc").exists()


@pytest.mark.timeout(60)
def test_labels_naming_a_missing_image_install_nothing(server: str, tmp_path: Path) -> None:
    labels = tmp_path / "val.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00099999.JPEG 2\n")
    with pytest.raises(DataError, match=r"1 of 2 images listed .* missing"):
        _install(f"{server}/good.tar", tmp_path / "inst", labels)
    assert not (tmp_path / "inst" / "val").exists()
    labels.write_text("ILSVRC2012_val_00000001.JPEG 1000\n")
    with pytest.raises(DataError, match=r"line 1: label 1000 is outside"):
        _install(f"{server}/good.tar", tmp_path / "inst2", labels)
    assert len(_Handler.requests) == 1  # bad labels are refused before any download


@pytest.mark.timeout(60)
def test_disk_space_and_url_are_checked_first(tmp_path: Path, aux_val_txt: Path) -> None:
    with pytest.raises(DataError, match="not enough disk space for the ImageNet validation set"):
        install_imagenet_val(
            "https://example.invalid/v.tar", tmp_path, labels=aux_val_txt, free_bytes=10**9
        )
    done = subprocess.run(
        [sys.executable, "-m", "ckvision", "dataset", "install-val", "--url", "/etc/passwd",
         "--install-dir", str(tmp_path / "i"), "--labels", str(aux_val_txt)],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert done.returncode == 2
    assert (
        len(done.stderr.strip().splitlines()) == 1 and "http://, https:// or file:" in done.stderr
    )


@pytest.mark.timeout(60)
def test_preprocessing_takes_images_and_labels_from_the_ck_deps(
    server: str, tmp_path: Path, aux_val_txt: Path
) -> None:
    folder = _install(f"{server}/good.tar", tmp_path / "inst", aux_val_txt)
    (folder / "val_map.txt").unlink()  # as ck-env's imagenet-2012-val: images only
    env = {  # what the dataset.imagenet.val and dataset.imagenet.aux deps export
        "CK_ENV_DATASET_IMAGENET_VAL": str(folder),
        "CK_CAFFE_IMAGENET_VAL_TXT": str(aux_val_txt),
        "CKVISION_DATASET_SIDE": "32",
    }
    meta = install_dataset("imagenet", tmp_path / "pre", env, log=lambda _m: None)
    from ckvision.data.cache import PreprocessedDataset

    ds = PreprocessedDataset.open(meta.parent)
    assert ds.size == COUNT and ds.kind == "imagenet-val" and ds.labels[1] == 37
