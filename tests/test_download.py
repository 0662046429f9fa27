"""Verified downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ckvision.errors import ModelError
from ckvision.models.download import download, file_digests

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "served"
    root.mkdir()
    (root / "model.onnx").write_bytes(PAYLOAD)
    _Handler.requests = []
    handler = functools.partial(_Handler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_verifies_and_installs(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "models" / "model.onnx"
    messages: list[str] = []
    assert download(f"{server}/model.onnx", dest, sha256=SHA256, progress=messages.append) == dest
    assert dest.read_bytes() == PAYLOAD
    assert file_digests(dest) == (SHA256, MD5)
    assert _entries(dest.parent) == ["model.onnx"]
    assert any("1.0/1.0 MB (100%)" in m for m in messages)


def test_md5_alone_is_accepted(server: str, tmp_path: Path) -> None:
    dest = download(f"{server}/model.onnx", tmp_path / "m.onnx", sha256="", md5=MD5.upper())
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize(
    ("sha256", "md5", "match"),
    [
        ("0" * 64, "", rf"expected sha256 0{{64}}, got {SHA256}"),
        (SHA256, "f" * 32, rf"expected md5 f{{32}}, got {MD5}"),
    ],
    ids=["sha256", "md5"],
)
def test_checksum_mismatch_leaves_nothing(
    server: str, tmp_path: Path, sha256: str, md5: str, match: str
) -> None:
    dest = tmp_path / "models" / "model.onnx"
    with pytest.raises(ModelError, match=rf"checksum mismatch for .*model\.onnx: {match}"):
        download(f"{server}/model.onnx", dest, sha256=sha256, md5=md5)
    assert _entries(dest.parent) == []


def test_no_checksum_is_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no checksum given"):
        download(f"{server}/model.onnx", tmp_path / "m.onnx", sha256="")
    assert _Handler.requests == []


def test_http_404_is_a_model_error(server: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot download .*/nope\.onnx: HTTP 404") as info:
        download(f"{server}/nope.onnx", tmp_path / "m.onnx", sha256=SHA256)
    assert "\n" not in str(info.value)
    assert _entries(tmp_path) == ["served"]


def test_unreachable_server_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot download http://127\.0\.0\.1:9/m"):
        download("http://127.0.0.1:9/m", tmp_path / "m.onnx", sha256=SHA256)
    assert _entries(tmp_path) == []


def test_existing_verified_file_is_not_downloaded_again(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    download(f"{server}/model.onnx", dest, sha256=SHA256)
    assert len(_Handler.requests) == 1
    messages: list[str] = []
    download(f"{server}/model.onnx", dest, sha256=SHA256, progress=messages.append)
    assert len(_Handler.requests) == 1
    assert messages == [f"{dest} is already downloaded and verified"]


def test_existing_wrong_file_is_replaced(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"stale")
    download(f"{server}/model.onnx", dest, sha256=SHA256)
    assert dest.read_bytes() == PAYLOAD and len(_Handler.requests) == 1
