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
