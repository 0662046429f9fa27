"""A backend that does no inference: measures the harness's own ceiling."""

from __future__ import annotations

import numpy as np

from ckvision.backends.base import Backend, Capabilities
from ckvision.backends.registry import register_backend

__all__ = ["NullBackend"]


@register_backend("null")
class NullBackend(Backend):
    """Returns constant logits (class 0 wins) without touching the input."""

    _logits: np.ndarray | None = None

    def load(self) -> None:
        if self._logits is None:
            self._logits = np.zeros((1, self.contract.output_width), dtype=np.float32)
            self._logits[0, self.contract.label_offset] = 1.0  # ImageNet class 0 wins

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._logits is None:
            self.load()
        assert self._logits is not None
        self.check_input(batch)
        return np.broadcast_to(self._logits, (len(batch), self.contract.output_width))

    def close(self) -> None:
        self._logits = None

    def version(self) -> dict[str, str]:
        return {"null": "1"}

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(device="none", max_batch=0, layouts=("NCHW", "NHWC"))
