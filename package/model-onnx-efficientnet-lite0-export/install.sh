#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision install-model --help).
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision install-model \
  --name "${CKVISION_MODEL}" --install-dir "${INSTALL_DIR}" --tags "${PACKAGE_TAGS:-}"
