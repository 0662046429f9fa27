#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision triton-repo --help).
# Variations (backend, maxbatch.N, [no-]dynamic-batching, instances.N, cpu|gpu, model)
# arrive as CKVISION_TRITON_* env.
set -euo pipefail
if [ "${CKVISION_TRITON_BACKEND}" = "tensorrt" ]; then
  MODEL_FILE="${CK_ENV_TENSORRT_MODEL_FILE}"
else
  MODEL_FILE="${CK_ENV_ONNX_MODEL_FILE}"
fi
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision triton-repo \
  --model "${MODEL_FILE}" --install-dir "${INSTALL_DIR}" \
  --backend "${CKVISION_TRITON_BACKEND}" --max-batch "${CKVISION_TRITON_MAX_BATCH}" \
  --dynamic-batching "${CKVISION_TRITON_DYNAMIC_BATCHING}" \
  --preferred-batch "${CKVISION_TRITON_PREFERRED_BATCH}" \
  --max-queue-delay-us "${CKVISION_TRITON_MAX_QUEUE_DELAY_US}" \
  --instances "${CKVISION_TRITON_INSTANCES}" --kind "${CKVISION_TRITON_KIND}" \
  --ort-threads "${CKVISION_TRITON_ORT_THREADS}"
