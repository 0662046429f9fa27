"""Verified downloads against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import hashlib
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_http import serve

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
    with serve(handler) as url:
        yield url


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


# --- the ResNet50 package's install path: the registry's checksums reach the check ---------


@pytest.fixture()
def resnet_mirror(server: str, tmp_path: Path) -> str:
    (tmp_path / "served" / "resnet50_v1.onnx").write_bytes(PAYLOAD)
    return server


def test_resnet50_install_checks_the_registered_md5(resnet_mirror: str, tmp_path: Path) -> None:
    from ckvision.ck.hooks.packages import install_model
    from ckvision.models.registry import RESNET50_ONNX_MD5

    install = tmp_path / "install"
    with pytest.raises(
        ModelError,
        match=rf"resnet50_v1\.onnx: expected md5 {RESNET50_ONNX_MD5}, "
        rf"got {MD5}",
    ):
        install_model("resnet50", install, mirror=resnet_mirror, log=lambda _m: None)
    assert _Handler.requests == ["/resnet50_v1.onnx"]
    assert not install.exists() or _entries(install) == []


@pytest.mark.parametrize("checks", ["md5", "sha256+size"])
def test_resnet50_install_with_matching_checksums(
    resnet_mirror: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: str
) -> None:
    import dataclasses

    from ckvision.ck.hooks.packages import install_model
    from ckvision.models import registry

    real = registry.get_model_spec("resnet50")
    fake = (
        dataclasses.replace(real, md5=MD5, sha256="")
        if checks == "md5"
        else dataclasses.replace(real, md5="", sha256=SHA256, size=len(PAYLOAD))
    )
    monkeypatch.setitem(registry._REGISTRY, "resnet50", fake)
    install = tmp_path / "install"
    path = install_model(
        "resnet50", install, tags="model,onnx,resnet50", mirror=resnet_mirror, log=lambda _m: None
    )
    assert path.read_bytes() == PAYLOAD
    assert _entries(install) == ["model.json", "model.onnx"]


def test_wrong_size_is_refused(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "m" / "model.onnx"
    with pytest.raises(ModelError, match=rf"expected {len(PAYLOAD) + 1} bytes, got {len(PAYLOAD)}"):
        download(f"{server}/model.onnx", dest, sha256=SHA256, size=len(PAYLOAD) + 1)
    assert _entries(dest.parent) == []


def test_mirror_keeps_the_file_name() -> None:
    from ckvision.models.download import mirrored_url

    url = "https://zenodo.org/record/4735647/files/resnet50_v1.onnx"
    assert mirrored_url(url, "") == url
    assert mirrored_url(url, "http://h:1/m/") == "http://h:1/m/resnet50_v1.onnx"
    with pytest.raises(ModelError, match="must be an http"):
        mirrored_url(url, "/local/dir")


def test_parts_left_by_a_killed_download_are_removed(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "m" / "model.onnx"
    dest.parent.mkdir()
    (dest.parent / ".model.onnx.abc123.part").write_bytes(b"half")
    download(f"{server}/model.onnx", dest, sha256=SHA256)
    assert _entries(dest.parent) == ["model.onnx"]
