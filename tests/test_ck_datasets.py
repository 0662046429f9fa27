"""Dataset variations through the real ``ck`` (2.6.4) in a temporary CK_REPOS/CK_TOOLS.

Two variations of the embedded sample set install side by side (the second never touches
the first), each env entry carries its variation tags, and a bad variation tag installs
nothing. No model is needed: a dataset package does not depend on one.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ckcli import ck

pytestmark = pytest.mark.slow
SAMPLE = "dataset,imagenet,preprocessed,ckvision-sample,first.40"
_PREPARE = """
from ckvision.ck.setup import PLATFORM_INIT_UID, detect_software, register_repo
from ckvision.ck.tool import run_ck
register_repo()
run_ck(["detect", "platform.os", f"--platform_init_uoa={PLATFORM_INIT_UID}", "--quiet"],
       capture=True)
detect_software()
"""


@pytest.fixture(scope="module")
def ck_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("ckdata")
    env = dict(os.environ, CK_REPOS=str(base / "repos"), CK_TOOLS=str(base / "tools"))
    prepared = subprocess.run(
        [sys.executable, "-c", _PREPARE],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert prepared.returncode == 0, prepared.stdout[-2000:] + prepared.stderr[-2000:]
    return env


def _envs(env: dict[str, str], tags: str) -> list[dict[str, object]]:
    """Installed dataset env entries matching ``tags``: their tags and install dir."""
    found = ck(env, "search", "env", f"--tags={tags}")
    assert found.returncode == 0, found.stdout
    entries = []
    for line in found.stdout.splitlines():
        if ":env:" not in line:
            continue
        uid = line.strip().split(":")[-1]
        meta = json.loads(ck(env, "load", f"env:{uid}", "--min").stdout)
        meta = meta.get("dict", meta)
        entries.append(
            {"tags": meta["tags"], "dir": meta["env"]["CK_ENV_DATASET_IMAGENET_PREPROCESSED"]}
        )
    return entries


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_two_variations_install_side_by_side(ck_env: dict[str, str]) -> None:
    first = ck(ck_env, "install", "package", f"--tags={SAMPLE}", "--quiet")
    assert first.returncode == 0, first.stdout[-3000:]
    (pillow,) = _envs(ck_env, "dataset,ckvision-sample")
    assert {"side.224", "crop.875", "using-pillow", "inter.linear", "rgb8", "first.40"} <= set(
        pillow["tags"]
    )  # type: ignore[arg-type]
    before = _digest(Path(str(pillow["dir"])))

    second = ck(ck_env, "install", "package", f"--tags={SAMPLE},using-opencv,inter.area", "--quiet")
    assert second.returncode == 0, second.stdout[-3000:]
    both = _envs(ck_env, "dataset,ckvision-sample")
    assert len(both) == 2 and len({str(e["dir"]) for e in both}) == 2
    (opencv,) = _envs(ck_env, "dataset,ckvision-sample,using-opencv,inter.area")
    assert "using-pillow" not in opencv["tags"] and "inter.linear" not in opencv["tags"]  # type: ignore[operator]
    assert _digest(Path(str(pillow["dir"]))) == before
    meta = json.loads((Path(str(opencv["dir"])) / "dataset.json").read_text())
    assert (meta["storage"], meta["preprocessing"]["library"], meta["size"]) == (
        "rgb8",
        "opencv",
        40,
    )


def test_demo_uses_the_sample_set_after_an_imagenet_folder_is_installed(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    from PIL import Image

    from ckvision.demo import benchmark_args

    folder = tmp_path / "my imagenet val"  # a space, as users' folders have
    folder.mkdir()
    for i in range(1, 4):
        Image.new("RGB", (40 + i, 30), (60 * i, 20, 90)).save(
            folder / f"ILSVRC2012_val_{i:08d}.JPEG", "JPEG"
        )
    (folder / "val_map.txt").write_text(
        "".join(f"ILSVRC2012_val_{i:08d}.JPEG {i}\n" for i in range(1, 4)), encoding="utf-8"
    )
    val = ck(
        ck_env,
        "install",
        "package",
        "--tags=dataset,imagenet,preprocessed,full",
        f"--env.IMAGENET_VAL_DIR={folder}",
        "--quiet",
    )
    assert val.returncode == 0, val.stdout[-3000:]
    (full,) = _envs(ck_env, "dataset,imagenet,preprocessed,full")
    assert json.loads((Path(str(full["dir"])) / "dataset.json").read_text())["size"] == 3
    # the demo's own --dep_add_tags.images picks exactly the pillow sample copy
    (added,) = [
        a
        for a in benchmark_args("Offline", "AccuracyOnly", {})
        if a.startswith("--dep_add_tags.images=")
    ]
    tags = "dataset,imagenet,preprocessed," + added.split("=", 1)[1]
    (picked,) = _envs(ck_env, tags)
    assert "ckvision-sample" in picked["tags"] and "using-pillow" in picked["tags"]  # type: ignore[operator]


def test_unknown_variation_tag_installs_nothing(ck_env: dict[str, str]) -> None:
    tools = Path(ck_env["CK_TOOLS"])
    before = sorted(p.name for p in tools.iterdir()) if tools.is_dir() else []
    envs_before = len(_envs(ck_env, "dataset"))
    bad = ck(ck_env, "install", "package", f"--tags={SAMPLE},inter.bogus", "--quiet")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stdout + bad.stderr
    after = sorted(p.name for p in tools.iterdir()) if tools.is_dir() else []
    assert after == before and len(_envs(ck_env, "dataset")) == envs_before


def _tiny_model(env: dict[str, str], folder: Path) -> None:
    """A real (tiny) ONNX classifier with the demo model's spatial contract, detected as
    a model,onnx env entry, so `ck run` has a model to resolve."""
    from conftest import build_tiny_onnx

    from ckvision.models.contract import ModelContract

    folder.mkdir(parents=True)
    build_tiny_onnx(folder / "model.onnx", image=224, classes=1000)
    contract = ModelContract(name="tiny224", output_name="logits")
    sidecar = {
        "name": "tiny224",
        "version": "1",
        "format": "onnx",
        "tags": [],
        "source": "test",
        "env": contract.to_env(),
    }
    (folder / "model.json").write_text(json.dumps(sidecar), encoding="utf-8")
    detected = ck(
        env,
        "detect",
        "soft",
        "--tags=model,onnx",
        f"--full_path={folder / 'model.onnx'}",
        "--quiet",
    )
    assert detected.returncode == 0, detected.stdout[-2000:]


def test_two_matching_datasets_are_one_line_not_a_silent_pick(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    if len(_envs(ck_env, "dataset,ckvision-sample")) < 2:
        pytest.skip("needs the two variations installed by the test above")
    _tiny_model(ck_env, tmp_path / "model")
    run = (
        "run",
        "program:image-classification-onnxruntime-loadgen-py",
        "--env.CK_LOADGEN_DATASET_SIZE=8",
        "--env.CK_LOADGEN_SCENARIO=Offline",
        "--skip_print_timers",
        "--return_error_if_external_fail=yes",
        "--quiet",
    )
    ambiguous = ck(ck_env, *run)
    assert ambiguous.returncode != 0
    lines = [x for x in ambiguous.stdout.splitlines() if "installed entries match images" in x]
    assert len(lines) == 1, ambiguous.stdout[-3000:]
    for tag in ("using-pillow", "inter.linear", "using-opencv", "inter.area"):
        assert tag in lines[0]
    assert "--dep_add_tags.images=" in lines[0]
    picked = ck(ck_env, *run, "--dep_add_tags.images=ckvision-sample,using-pillow")
    assert picked.returncode == 0, picked.stdout[-3000:]
    assert "accuracy=" in picked.stdout
    # the other variation does not match the model's contract: one line, non-zero exit
    wrong = ck(ck_env, *run, "--dep_add_tags.images=ckvision-sample,using-opencv")
    assert wrong.returncode != 0 and "accuracy=" not in wrong.stdout
    (line,) = [
        x for x in (wrong.stdout + wrong.stderr).splitlines() if "does not match model tiny224" in x
    ]
    assert "using-pillow,inter.linear" in line and "Traceback" not in wrong.stdout + wrong.stderr


# ---- issue 19: the user's ImageNet found through CK deps, the val download, calibration


def _val_folder(folder: Path, count: int = 4) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(1, count + 1):
        Image.new("RGB", (50 + i, 40), (50 * i, 90, 20)).save(
            folder / f"ILSVRC2012_val_{i:08d}.JPEG", "JPEG"
        )
    (folder / "val_map.txt").write_text(
        "".join(f"ILSVRC2012_val_{i:08d}.JPEG {i * 3}\n" for i in range(1, count + 1))
    )
    return folder


def _env_meta(env: dict[str, str], tags: str) -> list[dict[str, object]]:
    found = ck(env, "search", "env", f"--tags={tags}")
    metas = []
    for line in found.stdout.splitlines():
        if ":env:" in line:
            meta = json.loads(ck(env, "load", f"env:{line.strip().split(':')[-1]}", "--min").stdout)
            metas.append(meta.get("dict", meta))
    return metas


def test_detected_imagenet_val_feeds_preprocessing_and_calibration(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    folder = _val_folder(tmp_path / "my val")
    detected = ck(
        ck_env,
        "detect",
        "soft:dataset.imagenet.val.ckvision",
        f"--full_path={folder / 'ILSVRC2012_val_00000001.JPEG'}",
        "--quiet",
    )
    assert detected.returncode == 0, detected.stdout[-2000:]
    (val,) = _env_meta(ck_env, "dataset,imagenet,val,raw,original,jpg,caffe,2012")  # ck-env's
    assert val["env"]["CK_ENV_DATASET_IMAGENET_VAL"] == str(folder)  # type: ignore[index]
    # the preprocessing package takes its images from that dep: no env variable given
    done = ck(
        ck_env,
        "install",
        "package",
        "--tags=dataset,imagenet,preprocessed,full,from.imagenet-val,side.96",
        "--quiet",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    (pre,) = _envs(ck_env, "dataset,imagenet,preprocessed,from.imagenet-val")
    meta = json.loads((Path(str(pre["dir"])) / "dataset.json").read_text())
    assert (meta["size"], meta["source"]) == (4, str(folder))
    # a calibration list over the same images: refused when it overlaps the scored set
    (tmp_path / "cal.txt").write_text("ILSVRC2012_val_00000002.JPEG\n")
    refused = ck(
        ck_env,
        "install",
        "package",
        "--tags=dataset,imagenet,calibration,ckvision,from.imagenet-val",
        f"--env.CKVISION_CALIBRATION_LIST={tmp_path / 'cal.txt'}",
        f"--env.CKVISION_CALIBRATION_SCORED={pre['dir']}",
        "--quiet",
    )
    assert refused.returncode != 0
    assert "overlaps the scored set: 1 image(s) in both" in refused.stdout + refused.stderr
    assert _env_meta(ck_env, "dataset,imagenet,calibration,ckvision") == []
    other = tmp_path / "held-out"  # other pictures under the same names: no overlap
    other.mkdir()
    from PIL import Image

    Image.new("RGB", (33, 33), (1, 2, 3)).save(other / "ILSVRC2012_val_00000002.JPEG", "JPEG")
    accepted = ck(
        ck_env,
        "install",
        "package",
        "--tags=dataset,imagenet,calibration,ckvision",
        f"--env.CKVISION_CALIBRATION_LIST={tmp_path / 'cal.txt'}",
        f"--env.CKVISION_CALIBRATION_IMAGES={other}",
        f"--env.CKVISION_CALIBRATION_SCORED={pre['dir']}",
        "--quiet",
    )
    assert accepted.returncode == 0, accepted.stdout[-3000:]
    (cal,) = _env_meta(ck_env, "dataset,imagenet,calibration,ckvision")
    cal_dir = Path(str(cal["env"]["CK_ENV_DATASET_IMAGENET_CALIBRATION"]))  # type: ignore[index]
    assert (cal_dir / "images" / "ILSVRC2012_val_00000002.JPEG").is_file()


def test_val_download_package_installs_from_a_local_server(
    ck_env: dict[str, str], tmp_path: Path
) -> None:
    import http.server
    import threading

    from test_imagenet_val_download import GOOD, MD5, NAMES, _Handler

    _Handler.files = {"/v.tar": GOOD}
    _Handler.truncate_once, _Handler.requests = set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    labels = tmp_path / "val.txt"
    labels.write_text("".join(f"{n} {i}\n" for i, n in enumerate(NAMES)))
    url = f"http://127.0.0.1:{httpd.server_address[1]}/v.tar"
    try:
        base = ("install", "package", "--tags=dataset,imagenet,val,ckvision-download")
        wrong = ck(
            ck_env, *base, f"--env.CKVISION_IMAGENET_VAL_URL={url}",
            f"--env.CKVISION_IMAGENET_VAL_LABELS={labels}",
            f"--env.CKVISION_IMAGENET_VAL_MD5={'0' * 32}", "--quiet",
        )  # fmt: skip
        assert wrong.returncode != 0 and "checksum mismatch" in wrong.stdout + wrong.stderr
        assert _env_meta(ck_env, "dataset,imagenet,val,ckvision-download") == []
        done = ck(
            ck_env, *base, f"--env.CKVISION_IMAGENET_VAL_URL={url}",
            f"--env.CKVISION_IMAGENET_VAL_LABELS={labels}",
            f"--env.CKVISION_IMAGENET_VAL_MD5={MD5}", "--quiet",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    (val,) = _env_meta(ck_env, "dataset,imagenet,val,raw,original,jpg,caffe,ckvision-download")
    folder = Path(str(val["env"]["CK_ENV_DATASET_IMAGENET_VAL"]))  # type: ignore[index]
    assert sorted(p.name for p in folder.glob("*.JPEG")) == NAMES
    assert (folder / "val_map.txt").is_file()
