#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision install-dataset --help).
# The model dependency's ML_MODEL_* env decides the preprocessing.
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision install-dataset \
  --kind "${CKVISION_DATASET_KIND}" --install-dir "${INSTALL_DIR}" \
  --count "${CKVISION_DATASET_COUNT:-0}" --source "${IMAGENET_VAL_DIR:-}"
