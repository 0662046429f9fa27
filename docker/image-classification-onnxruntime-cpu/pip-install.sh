#!/bin/sh
# pip install inside an image build: pinned lock files, --no-deps, no cache.
# With wheels in the build context (python -m ckvision docker build puts the host's wheelhouse
# there) the build uses no network at all; otherwise pip uses the index, trusting certs/ca.crt
# if one was put there (a TLS-intercepting proxy), plus PyTorch's CPU index for torch==X+cpu.
set -eu
dir=$(dirname "$0")
if ls "$dir"/wheels/*.whl >/dev/null 2>&1; then
  set -- --no-index --find-links "$dir/wheels" "$@"
else
  set -- --extra-index-url https://download.pytorch.org/whl/cpu "$@"
  if [ -s "$dir/certs/ca.crt" ]; then
    export PIP_CERT="$dir/certs/ca.crt"
  fi
fi
exec /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps "$@"
