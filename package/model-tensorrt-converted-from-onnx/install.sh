#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision build-engine --help).
# Variations (fp32|fp16|int8, maxbatch.N, model) arrive as CKVISION_TRT_* env.
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision build-engine \
  --onnx "${CK_ENV_ONNX_MODEL_ONNX_FILEPATH}" --install-dir "${INSTALL_DIR}" \
  --model "${CKVISION_TRT_MODEL}" --precision "${CKVISION_TRT_PRECISION}" \
  --max-batch "${CKVISION_TRT_MAX_BATCH}" --workspace-mib "${CKVISION_TRT_WORKSPACE_MIB}" \
  --calibration-dataset "${CK_ENV_DATASET_IMAGENET_PREPROCESSED:-}" \
  --calibration-count "${CKVISION_TRT_CALIBRATION_COUNT}"
