#! /bin/bash
# CK package installer: ckvision and its pinned dependencies into ${INSTALL_DIR}/python
# (all logic is in ckvision/ck/bootstrap.py, which needs only the standard library).
set -euo pipefail
export PYTHONPATH="${PACKAGE_DIR}/../.."
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision.ck.bootstrap --install-dir "${INSTALL_DIR}"
