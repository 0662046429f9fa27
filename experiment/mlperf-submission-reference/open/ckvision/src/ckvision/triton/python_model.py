"""Triton Python-backend model: ONNX Runtime on CPU inside Triton (copied as ``1/model.py``).

Runs in the server's Python (the triton env), so it imports nothing from ckvision. The
ONNX file sits beside it; the input/output names come from the model's config.pbtxt.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:  # type: ignore[type-arg]
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("ORT_THREADS", "1"))
        options.inter_op_num_threads = 1
        here = os.path.join(args["model_repository"], args["model_version"])
        self.session = ort.InferenceSession(
            os.path.join(here, "model.onnx"),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
        self.onnx_input = self.session.get_inputs()[0].name

    def execute(self, requests: list) -> list:  # type: ignore[type-arg]
        arrays = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        sizes = [len(a) for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        logits = self.session.run(None, {self.onnx_input: batch})[0].astype(np.float32)
        responses, start = [], 0
        for size in sizes:
            out = pb_utils.Tensor(self.output_name, logits[start : start + size])
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            start += size
        return responses
