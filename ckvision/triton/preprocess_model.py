"""Triton Python-backend model: JPEG bytes in, the model's input out (copied as ``1/model.py``).

The preprocessing step of the JPEG-in ensemble (:mod:`ckvision.triton.ensemble`). It runs
in the server's Python (the triton env: numpy < 2, Pillow) and imports the preprocessing
from the ckvision checkout named by its ``CKVISION_PATH`` parameter, so its pixels are the
in-process engines' (:mod:`ckvision.data.encoded`), and the offline cache's for Pillow
and OpenCV. A request whose image cannot be decoded gets an error response naming it; the
other requests of the batch are answered.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:  # type: ignore[type-arg]
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        if params["CKVISION_PATH"] not in sys.path:
            sys.path.insert(0, params["CKVISION_PATH"])
        from ckvision.data.encoded import make_preprocessor
        from ckvision.data.preprocess import normalise
        from ckvision.data.variation import Preprocessing
        from ckvision.models.contract import ModelContract

        here = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(here, "contract.json"), encoding="utf-8") as f:
            self.contract = ModelContract.from_env(json.load(f))
        self.normalise = normalise
        self.engine = make_preprocessor(
            Preprocessing.for_model(self.contract),
            params["ENGINE"],
            max_batch=int(config["max_batch_size"]),
            threads=int(params["THREADS"]),
        )
        self.engine.prepare(1)
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        self.dtype = np.dtype(self.contract.input_dtype)

    def _pixels(self, blobs: list, names: list) -> np.ndarray:  # type: ignore[type-arg]
        return self.normalise(self.engine(blobs, names), self.contract).astype(self.dtype)

    def execute(self, requests: list) -> list:  # type: ignore[type-arg]
        blobs: list[bytes] = []
        names: list[str] = []
        sizes: list[int] = []
        for number, request in enumerate(requests):
            items = pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            flat = [bytes(b) for b in items.reshape(-1)]
            blobs.extend(flat)
            names.extend(f"request {number} item {k}" for k in range(len(flat)))
            sizes.append(len(flat))
        try:
            batches = [self._pixels(blobs, names)]
            split = True
        except Exception:  # noqa: BLE001 - one request at a time: only the bad one fails
            batches, split = [], False
        responses, start = [], 0
        for size in sizes:
            part = slice(start, start + size)
            start += size
            try:
                pixels = batches[0][part] if split else self._pixels(blobs[part], names[part])
            except Exception as err:  # noqa: BLE001 - the request's answer is the error
                error = pb_utils.TritonError(f"preprocessing failed: {err}")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            out = pb_utils.Tensor(self.output_name, np.ascontiguousarray(pixels))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        return responses

    def finalize(self) -> None:
        self.engine.close()
