"""Runs over a whole set bigger than the performance sample count: every sample scored,
RAM bounded by the sample count (LoadGen loads it set by set), peak RSS recorded.

Real LoadGen, real ONNX Runtime on the tests' tiny model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import IMAGE, tiny_logits

from ckvision.config import Mode, RunConfig
from ckvision.data.cache import write_cache
from ckvision.harness.qsl import SampleLibrary
from ckvision.models.contract import ModelContract
from ckvision.program import ProgramInputs, run_program

SAMPLES = 700
BUFFER = 64


@pytest.mark.timeout(120)
def test_accuracy_over_the_whole_set_holds_one_buffer_and_records_peak_rss(
    tmp_path: Path,
    tiny_contract: ModelContract,
    tiny_onnx_model: Path,
    quick_config: Callable[..., RunConfig],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    images = rng.normal(size=(SAMPLES, 3, IMAGE, IMAGE)).astype(np.float32)
    labels = tiny_logits(images).argmax(axis=1)
    labels[:70] = (labels[:70] + 1) % 10  # 630 of 700 right: top-1 90.000 %
    data = write_cache(
        tmp_path / "data",
        name="many",
        kind="synthetic",
        source="generated",
        contract=tiny_contract,
        items=[(f"s{i:04d}", int(label)) for i, label in enumerate(labels)],
        load=lambda file: images[int(file[1:])],
    )
    loads: list[int] = []
    real_load = SampleLibrary.load

    def spy(self: SampleLibrary, indices: Sequence[int]) -> None:
        loads.append(len(indices))
        real_load(self, indices)

    monkeypatch.setattr(SampleLibrary, "load", spy)
    config = quick_config(mode=Mode.ACCURACY, buffer_size=BUFFER, count_override=None)
    inputs = ProgramInputs(tiny_onnx_model, tiny_contract, data.path, {"name": "tiny"})
    record = run_program(config, inputs, tmp_path / "out", log=lambda _m: None)
    assert record["accuracy"]["total"] == SAMPLES  # every sample of the set scored
    assert record["accuracy"]["top1"] == pytest.approx(90.0)
    assert max(loads) <= BUFFER and sum(loads) == SAMPLES  # set by set, never all at once
    peak = record["resources"]["peak_rss_mib"]
    assert 10 < peak < 64 * 1024


def _rss_file_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile")


@pytest.mark.timeout(60)
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux /proc only")
def test_loading_sets_releases_the_mapped_pages_it_read(tmp_path: Path) -> None:
    from ckvision.data.cache import PreprocessedDataset, write_rgb8_cache
    from ckvision.data.variation import Preprocessing

    spec = Preprocessing(side=128)  # 48 KiB a sample, 2000 samples: 94 MiB mapped
    row = np.full((128, 128, 3), 7, dtype=np.uint8)
    write_rgb8_cache(
        tmp_path / "c", name="pages", kind="synthetic", source="generated", spec=spec,
        items=[(f"s{i}", 1) for i in range(2000)], load=lambda _f: row,
    )  # fmt: skip
    data = PreprocessedDataset.open(tmp_path / "c")
    qsl = SampleLibrary(data.images, data.labels, RunConfig(buffer_size=250))
    before = _rss_file_kib()
    for first in range(0, 2000, 250):  # LoadGen's accuracy mode: set after set
        qsl.load(range(first, first + 250))
        assert int(qsl.ram[-1, 0, 0, 0]) == 7
        qsl.unload([])
    assert _rss_file_kib() - before < 20 * 1024  # not the 94 MiB it read
