#!/bin/sh
# Python 3.11 and its venv module (ck 2.6.4 runs on <= 3.11; our pins need >= 3.11).
# NVIDIA's TensorRT images ship another python3 (3.10 on Ubuntu 22.04): add 3.11 from apt.
set -eu
if python3.11 -c 'import venv, ensurepip' 2>/dev/null; then
  exit 0
fi
apt-get update
apt-get install -y --no-install-recommends python3.11 python3.11-venv
rm -rf /var/lib/apt/lists/*
