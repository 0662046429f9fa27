#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision submission install-source --help).
# --env.CKVISION_INFERENCE_URL=file:///path/to/inference.git (or a local path) where GitHub is out of reach.
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision submission install-source \
  --install-dir "${INSTALL_DIR}" --url "${CKVISION_INFERENCE_URL}" --commit "${CKVISION_INFERENCE_COMMIT}"
