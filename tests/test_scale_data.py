"""Scale (issue 19 part 1): the SYNTHETIC folder, parallel preprocessing resumable after
SIGKILL, the disk-space check, and calibration sets that must not overlap the scored set.

Real images (a few hundred from ``ckvision dataset synth``), real worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ckvision.data import build as build_mod
from ckvision.data.build import CHUNK, resumable_dir
from ckvision.data.cache import PreprocessedDataset
from ckvision.data.calibration_set import (
    check_no_overlap,
    install_calibration_set,
    open_calibration_set,
    read_calibration_list,
    scored_files,
)
from ckvision.data.imagenet import build_imagenet_cache, read_val_map
from ckvision.data.preprocess import rgb8_file
from ckvision.data.synth import SYNTH_MARKER, synth_dataset, synth_image
from ckvision.data.variation import Preprocessing
from ckvision.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 300  # three chunks of CHUNK=128
SPEC = Preprocessing(side=64, crop=875)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "ckvision", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "val"
    done = _cli("dataset", "synth", "--images", str(IMAGES), "--out", str(out), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "SYNTHETIC dataset of 300 images" in done.stdout
    assert "images/s, ETA" in done.stdout  # live progress with rate and ETA
    return out


@pytest.mark.timeout(120)
def test_synth_folder_has_imagenet_val_statistics(synth_dir: Path) -> None:
    items = read_val_map(synth_dir)  # the ImageNet val layout, every file present
    assert len(items) == IMAGES
    assert items[0][0] == "ILSVRC2012_val_00000001.JPEG"
    meta = json.loads((synth_dir / SYNTH_MARKER).read_text())
    assert meta["kind"] == "synthetic" and "SYNTHETIC" in meta["note"]
    assert "imagenet" not in meta["name"].replace("imagenet-layout", "")
    sizes = [(synth_dir / f).stat().st_size for f, _ in items]
    assert 70_000 < np.mean(sizes) < 160_000  # ImageNet val: ~110 KB a file
    modes, shapes = {}, []
    for file, _label in items:
        with Image.open(synth_dir / file) as image:
            modes[image.mode] = modes.get(image.mode, 0) + 1
            shapes.append(image.size)
    assert modes.get("L", 0) >= 3 and modes.get("CMYK", 0) >= 1 and modes["RGB"] > 250
    widths, heights = zip(*shapes, strict=True)
    assert 400 < np.mean(widths) < 560 and 330 < np.mean(heights) < 470
    assert len(set(shapes)) > 10  # a spread of sizes and aspect ratios
    assert shapes.count((500, 375)) > IMAGES // 3
    labels = {label for _f, label in items}
    assert labels <= {282, 967, 872, 652}  # the embedded photos' classes


@pytest.mark.timeout(60)
def test_synth_is_deterministic_and_refuses_existing_or_full_disk(tmp_path: Path) -> None:
    assert synth_image(7) == synth_image(7)
    assert synth_image(7)[0] != synth_image(8)[0]
    with pytest.raises(DataError, match=r"not enough disk space for 50000 images"):
        synth_dataset(tmp_path / "big", 50000, free_bytes=10**9, progress=None)
    assert not (tmp_path / "big").exists()
    (tmp_path / "there").mkdir()
    done = _cli("dataset", "synth", "--images", "3", "--out", str(tmp_path / "there"))
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        f"ckvision: error: {tmp_path / 'there'} already exists; remove it or choose another --out"
    ]
    done = _cli("dataset", "synth", "--images", "0", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "not a positive whole number" in done.stderr


@pytest.mark.timeout(120)
def test_parallel_cache_equals_the_serial_pixels(synth_dir: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    ds = build_imagenet_cache(
        synth_dir, tmp_path / "cache", SPEC, progress=messages.append, workers=2
    )
    assert ds.kind == "synthetic" and ds.name == f"synthetic-imagenet-layout-{IMAGES}"
    assert ds.meta["synthetic"] is True and "not ImageNet" in ds.meta["accuracy_note"]
    assert ds.images.shape == (IMAGES, 64, 64, 3)
    for i in (0, 1, 2, 127, 128, 299):  # first/last rows of chunks, greyscale, CMYK
        np.testing.assert_array_equal(ds.images[i], rgb8_file(synth_dir / ds.files[i], SPEC))
    assert ds.labels.tolist() == [label for _f, label in read_val_map(synth_dir)]
    assert messages[-1].startswith(f"preprocessed {IMAGES}/{IMAGES} images, ")
    assert "images/s, ETA" in messages[-1]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


_KILLABLE = """
import sys, time
from pathlib import Path
from ckvision.data.imagenet import build_imagenet_cache
from ckvision.data.variation import Preprocessing

def progress(message):
    print(message, flush=True)
    if message.startswith("preprocessed "):
        time.sleep(120)  # hold here until the test kills us

build_imagenet_cache(Path(sys.argv[1]), Path(sys.argv[2]), Preprocessing(side=64),
                     progress=progress, workers=2)
"""


@pytest.mark.timeout(180)
def test_resume_after_sigkill(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "cache"
    proc = subprocess.Popen(  # noqa: S603 - argument list, no shell
        [sys.executable, "-c", _KILLABLE, str(synth_dir), str(dest)],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("preprocessed "):
            break  # one chunk recorded as done, the builder now sleeps
    os.killpg(proc.pid, signal.SIGKILL)  # the builder and its worker processes
    proc.wait(timeout=30)
    work = resumable_dir(dest)
    assert not dest.exists()  # never a half cache that looks complete
    assert not (work / "dataset.json").exists()
    with pytest.raises(DataError, match="is not a preprocessed dataset"):
        PreprocessedDataset.open(work)
    assert len(list((work / "done").iterdir())) == 1
    time.sleep(0.2)  # let orphaned workers see their parent gone

    calls: list[int] = []
    real = build_mod._chunk_worker

    def counting(args: tuple) -> int:  # type: ignore[type-arg]
        calls.append(args[3])
        return real(args)

    monkeypatch.setattr(build_mod, "_chunk_worker", counting)
    messages: list[str] = []
    ds = build_imagenet_cache(synth_dir, dest, SPEC, progress=messages.append, workers=1)
    assert any("resuming an interrupted build: 1 chunk(s) already done" in m for m in messages)
    assert len(calls) == 2  # of 3 chunks: the finished one was kept
    assert ds.size == IMAGES and not work.exists()
    for i in range(0, IMAGES, 37):
        np.testing.assert_array_equal(ds.images[i], rgb8_file(synth_dir / ds.files[i], SPEC))


@pytest.mark.timeout(60)
def test_a_chunk_is_marked_done_only_after_its_rows_are_synced(
    synth_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "cache"
    done = resumable_dir(dest) / "done"
    synced: list[int] = []  # markers present at each sync
    real = build_mod.os.fdatasync

    def watching(fd: int) -> None:
        assert Path(os.readlink(f"/proc/self/fd/{fd}")).name == "images.npy"
        synced.append(len(list(done.iterdir())))
        real(fd)

    monkeypatch.setattr(build_mod.os, "fdatasync", watching)
    build_imagenet_cache(synth_dir, dest, SPEC, workers=1)
    assert synced == [0, 1, 2]  # one sync per chunk, each before its marker


@pytest.mark.timeout(60)
def test_a_different_plan_does_not_resume(synth_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    work = resumable_dir(dest)
    work.mkdir()
    (work / "plan.json").write_text('{"version": 0}')
    (work / "images.npy").write_bytes(b"junk")
    messages: list[str] = []
    ds = build_imagenet_cache(synth_dir, dest, SPEC, count=CHUNK, progress=messages.append)
    assert ds.size == CHUNK and not any("resuming" in m for m in messages)


@pytest.mark.timeout(60)
def test_disk_space_refused_before_any_work(synth_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "cache"
    with pytest.raises(DataError, match=r"^not enough disk space for the synthetic-.* cache"):
        build_imagenet_cache(synth_dir, dest, SPEC, free_bytes=1000)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


@pytest.mark.timeout(60)
def test_unreadable_image_in_a_worker_is_one_line(synth_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "val"
    folder.mkdir()
    items = read_val_map(synth_dir)[: CHUNK + 10]
    for file, _label in items:
        os.link(synth_dir / file, folder / file)
    (folder / "val_map.txt").write_text("".join(f"{f} {label}\n" for f, label in items))
    bad = folder / items[CHUNK + 3][0]
    bad.unlink()
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    done = _cli(
        "dataset", "preprocess", "--source", str(folder), "--out", str(tmp_path / "c"),
        "--side", "64", "--workers", "2",
    )  # fmt: skip
    assert done.returncode == 3
    last = done.stderr.strip().splitlines()
    assert len(last) == 1 and last[0].startswith("ckvision: error: cannot use image ")
    assert bad.name in last[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val"]  # nothing half-installed


def _cal_list(path: Path, files: list[str], labels: bool = False) -> Path:
    path.write_text("".join(f"{f} {i}\n" if labels else f"{f}\n" for i, f in enumerate(files)))
    return path


@pytest.mark.timeout(60)
def test_calibration_overlap_refused(synth_dir: Path, tmp_path: Path) -> None:
    files = [f for f, _label in read_val_map(synth_dir)]
    scored = tmp_path / "scored"
    scored.mkdir()
    for file in files[:100]:
        (scored / file).write_bytes((synth_dir / file).read_bytes())  # copies, not links
    cal = read_calibration_list(_cal_list(tmp_path / "cal.txt", files[200:250]), synth_dir)
    assert len(cal) == 50 and cal.labels[0] is None
    check_no_overlap(cal, scored_files(scored))  # disjoint: fine
    overlapping = _cal_list(tmp_path / "bad.txt", files[90:110], labels=True)
    cal = read_calibration_list(overlapping, synth_dir)
    assert cal.labels[:2] == (0, 1)
    with pytest.raises(DataError, match=r"overlaps the scored set: 10 image\(s\) in both"):
        check_no_overlap(cal, scored_files(scored))  # byte-identical copies are caught
    done = _cli(
        "dataset", "calibration", "--list", str(overlapping), "--images", str(synth_dir),
        "--scored", str(synth_dir), "--install-dir", str(tmp_path / "inst"),
    )  # fmt: skip
    assert done.returncode == 3
    assert len(done.stderr.strip().splitlines()) == 1 and "overlaps the scored set" in done.stderr
    assert not (tmp_path / "inst").exists()


@pytest.mark.timeout(60)
def test_calibration_overlap_with_a_preprocessed_dataset(synth_dir: Path, tmp_path: Path) -> None:
    files = [f for f, _label in read_val_map(synth_dir)]
    ds = build_imagenet_cache(synth_dir, tmp_path / "cache", SPEC, count=20)
    cal = read_calibration_list(_cal_list(tmp_path / "c.txt", files[15:25]), synth_dir)
    with pytest.raises(DataError, match=r"5 image\(s\) in both"):
        check_no_overlap(cal, scored_files(ds.path))
    later = read_calibration_list(_cal_list(tmp_path / "d.txt", files[20:25]), synth_dir)
    check_no_overlap(later, scored_files(ds.path))


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", r"names no images"),
        ("a.JPEG 1 2\n", r"line 1: expected '<file>' or '<file> <label>'"),
        ("a.JPEG cat\n", r"line 1: label 'cat' is not a number"),
        ("../etc/passwd\n", r"line 1: .* must be a file inside the image folder"),
        ("ILSVRC2012_val_00000001.JPEG\nILSVRC2012_val_00000001.JPEG\n", r"names .* twice"),
        ("ILSVRC2012_val_00000001.JPEG\nmissing.JPEG\n", r"1 of 2 images .* missing .*missing"),
    ],
    ids=["empty", "fields", "label", "outside", "twice", "missing"],
)
@pytest.mark.timeout(30)
def test_calibration_list_errors(synth_dir: Path, tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "cal.txt").write_text(content)
    with pytest.raises(DataError, match=match):
        read_calibration_list(tmp_path / "cal.txt", synth_dir)


@pytest.mark.timeout(60)
def test_calibration_install_is_all_or_nothing(synth_dir: Path, tmp_path: Path) -> None:
    files = [f for f, _label in read_val_map(synth_dir)]
    good = read_calibration_list(_cal_list(tmp_path / "cal.txt", files[:5]), synth_dir)
    meta = install_calibration_set(good, tmp_path / "inst")
    assert json.loads(meta.read_text())["kind"] == "calibration"
    reopened = open_calibration_set(tmp_path / "inst")
    assert reopened.files == tuple(files[:5])
    assert (reopened.paths[0]).read_bytes() == (synth_dir / files[0]).read_bytes()
    with pytest.raises(DataError, match="not enough disk space for the calibration set"):
        install_calibration_set(good, tmp_path / "inst2", free_bytes=10)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "ok.JPEG").write_bytes((synth_dir / files[0]).read_bytes())
    (folder / "bad.JPEG").write_bytes(b"junk")
    bad = read_calibration_list(_cal_list(tmp_path / "b.txt", ["ok.JPEG", "bad.JPEG"]), folder)
    with pytest.raises(DataError, match=r"cannot use image .*bad\.JPEG"):
        install_calibration_set(bad, tmp_path / "inst3")
    assert not (tmp_path / "inst2").exists() and not (tmp_path / "inst3" / "data").exists()


@pytest.mark.timeout(60)
def test_pillow_fast_path_gives_the_general_paths_pixels(synth_dir: Path, tmp_path: Path) -> None:
    from ckvision.data.images import decode_rgb8
    from ckvision.data.preprocess import resize_and_crop

    rotated = tmp_path / "rotated.JPEG"  # an EXIF rotation takes the general path
    with Image.open(synth_dir / "ILSVRC2012_val_00000005.JPEG") as image:
        exif = image.getexif()
        exif[0x0112] = 6
        image.save(rotated, "JPEG", exif=exif)
    paths = [synth_dir / f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 61)] + [rotated]
    for spec in (SPEC, Preprocessing(side=224), Preprocessing(side=96, interpolation="area")):
        for path in paths:
            fast = rgb8_file(path, spec)
            assert fast.flags.c_contiguous and fast.dtype == np.uint8
            np.testing.assert_array_equal(fast, resize_and_crop(decode_rgb8(path), spec))
    assert rgb8_file(rotated, SPEC).shape == (64, 64, 3)
