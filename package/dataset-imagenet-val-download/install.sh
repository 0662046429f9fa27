#! /bin/bash
# CK package installer: all logic is in ckvision (python -m ckvision dataset install-val --help).
# The URL is yours to give (ImageNet needs a login); the published checksum is checked.
set -euo pipefail
exec "${CK_ENV_COMPILER_PYTHON_FILE}" -m ckvision dataset install-val \
  --url "${CKVISION_IMAGENET_VAL_URL:-}" --install-dir "${INSTALL_DIR}" \
  --labels "${CKVISION_IMAGENET_VAL_LABELS:-${CK_CAFFE_IMAGENET_VAL_TXT:-}}" \
  --md5 "${CKVISION_IMAGENET_VAL_MD5:-}" --sha256 "${CKVISION_IMAGENET_VAL_SHA256:-}"
