#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision quantize-model --help).
# Variations (minmax|entropy|percentile, maxbatch.N, model) arrive as CKVISION_INT8_* env;
# a calibration folder (never the scored set) as --env.CKVISION_INT8_CALIBRATION_DIR=...
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision quantize-model \
  --onnx "${CK_ENV_ONNX_MODEL_ONNX_FILEPATH}" --install-dir "${INSTALL_DIR}" \
  --method "${CKVISION_INT8_METHOD}" --max-batch "${CKVISION_INT8_MAX_BATCH:-}" \
  --calibration-dir "${CKVISION_INT8_CALIBRATION_DIR:-}" \
  --calibration-list "${CKVISION_INT8_CALIBRATION_LIST:-}" \
  --calibration-count "${CKVISION_INT8_CALIBRATION_COUNT:-0}" \
  --accuracy-dataset "${CK_ENV_DATASET_IMAGENET_PREPROCESSED:-}" \
  --accuracy-count "${CKVISION_INT8_ACCURACY_COUNT:-0}"
