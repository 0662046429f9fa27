"""ImageNet val folder: val_map.txt parsing, cache build, atomicity on failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ckvision.data.cache import PreprocessedDataset
from ckvision.data.imagenet import build_imagenet_cache, read_val_map, throttled_progress
from ckvision.data.preprocess import preprocess_file
from ckvision.errors import DataError
from ckvision.models.contract import ModelContract

CONTRACT = ModelContract(name="tiny", image_size=16, resize_size=20)
LABELS = (65, 970, 230, 809, 516, 57)


def _name(i: int) -> str:
    return f"ILSVRC2012_val_{i:08d}.JPEG"


@pytest.fixture()
def val_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "val"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(1, len(LABELS) + 1):
        size = (24 + 4 * i, 20 + 2 * i)  # varied sizes and aspect ratios
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / _name(i), "JPEG", quality=90)
    lines = "".join(f"{_name(i)} {label}\n" for i, label in enumerate(LABELS, start=1))
    (folder / "val_map.txt").write_text(lines, encoding="utf-8")
    return folder


def test_read_val_map(val_dir: Path) -> None:
    items = read_val_map(val_dir)
    assert items == [(_name(i), label) for i, label in enumerate(LABELS, start=1)]
    assert read_val_map(val_dir / "val_map.txt") == items


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, r"no val_map\.txt in .*JPEGs \+ val_map\.txt"),
        ("", r"lists no images"),
        ("ILSVRC2012_val_00000001.JPEG\n", r"line 1: expected '<file> <label>'"),
        ("ILSVRC2012_val_00000001.JPEG 1 2\n", r"line 1: expected '<file> <label>'"),
        (
            "ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG cat\n",
            r"line 2: label 'cat' is not an integer",
        ),
        ("\nILSVRC2012_val_00000001.JPEG 1000\n", r"line 2: label 1000 is outside 0\.\.999"),
        ("ILSVRC2012_val_00000001.JPEG -1\n", r"line 1: label -1 is outside 0\.\.999"),
        ("../secret.JPEG 1\n", r"line 1: .* must be a file inside the folder"),
        (
            "ILSVRC2012_val_00000001.JPEG 65\nmissing_a.JPEG 1\nmissing_b.JPEG 2\n",
            r"2 of 3 images listed in .* are missing \(first: missing_a\.JPEG\)",
        ),
    ],
    ids=[
        "no-map",
        "empty",
        "one-field",
        "three-fields",
        "non-int",
        "too-big",
        "negative",
        "outside",
        "missing-images",
    ],
)
def test_val_map_errors(tmp_path: Path, content: str | None, match: str) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / _name(1), "JPEG")
    if content is not None:
        (tmp_path / "val_map.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_val_map(tmp_path)


def test_build_full_cache(val_dir: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    ds = build_imagenet_cache(val_dir, tmp_path / "cache", CONTRACT, progress=messages.append)
    assert (ds.name, ds.kind, ds.size) == ("imagenet2012-val", "imagenet-val", 6)
    assert ds.images.shape == (6, 16, 16, 3) and ds.images.dtype == np.uint8  # rgb8
    assert ds.labels.tolist() == list(LABELS)
    assert ds.files == tuple(_name(i) for i in range(1, 7))
    bound = ds.for_model(CONTRACT)  # normalised at load time, as the program feeds it
    assert bound.images.shape == (6, 3, 16, 16) and bound.images.dtype == np.float32
    np.testing.assert_array_equal(bound.images[3], preprocess_file(val_dir / _name(4), CONTRACT))
    np.testing.assert_array_equal(np.asarray(bound.images)[[1, 4]], bound.images[[1, 4]])
    bound.check_matches(CONTRACT)
    assert messages[-1].startswith("preprocessed 6/6 images, ")  # + rate and ETA
    reopened = PreprocessedDataset.open(tmp_path / "cache")
    assert reopened.size == 6


def test_build_subset(val_dir: Path, tmp_path: Path) -> None:
    ds = build_imagenet_cache(val_dir, tmp_path / "sub", CONTRACT, count=3, first=2)
    assert ds.name == "imagenet2012-val-3"
    assert ds.files == (_name(3), _name(4), _name(5))
    assert ds.labels.tolist() == list(LABELS[2:5])
    meta = json.loads((tmp_path / "sub" / "dataset.json").read_text())
    assert meta["first"] == 2


def test_bad_count_and_first(val_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="must not be negative"):
        build_imagenet_cache(val_dir, tmp_path / "c", CONTRACT, count=-1)
    with pytest.raises(DataError, match="past the end"):
        build_imagenet_cache(val_dir, tmp_path / "c", CONTRACT, first=6)
    assert not (tmp_path / "c").exists()


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_unreadable_image_leaves_nothing(val_dir: Path, tmp_path: Path) -> None:
    bad = val_dir / _name(5)
    bad.write_bytes(bad.read_bytes()[:100])
    dest = tmp_path / "out" / "cache"
    with pytest.raises(DataError, match=r"cannot use image .*ILSVRC2012_val_00000005\.JPEG"):
        build_imagenet_cache(val_dir, dest, CONTRACT)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_interrupted_build_leaves_no_dest(val_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "cache"

    def interrupt(_message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_imagenet_cache(val_dir, dest, CONTRACT, progress=interrupt)
    assert not dest.exists()
    assert _leftovers(dest.parent) == []


def test_interrupted_rebuild_keeps_the_old_cache(val_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "cache"
    build_imagenet_cache(val_dir, dest, CONTRACT, count=2)

    def interrupt(_message: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_imagenet_cache(val_dir, dest, CONTRACT, progress=interrupt)
    assert PreprocessedDataset.open(dest).name == "imagenet2012-val-2"


def test_progress_is_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.5, 1.0, 2.5, 3.0, 3.1])
    monkeypatch.setattr("ckvision.data.imagenet.time.monotonic", lambda: next(clock))
    seen: list[str] = []
    report = throttled_progress(seen.append, "preprocessed", every_s=2.0)
    assert report is not None
    for done in range(1, 7):
        report(done, 6)
    assert seen == ["preprocessed 1/6 images", "preprocessed 4/6 images", "preprocessed 6/6 images"]
    assert throttled_progress(None, "x") is None
