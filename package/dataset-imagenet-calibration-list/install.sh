#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision dataset calibration --help).
# Checks the list against its folder (and against a scored dataset when given), copies both.
set -euo pipefail
scored=()
if [ -n "${CKVISION_CALIBRATION_SCORED:-}" ]; then scored=(--scored "${CKVISION_CALIBRATION_SCORED}"); fi
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision dataset calibration \
  --list "${CKVISION_CALIBRATION_LIST:-}" \
  --images "${CKVISION_CALIBRATION_IMAGES:-${CK_ENV_DATASET_IMAGENET_VAL:-}}" \
  "${scored[@]}" --install-dir "${INSTALL_DIR}"
