#!/bin/sh
# The TensorRT and cuda-python bindings for the venv's Python, pinned to the TensorRT the base
# image ships (libnvinfer). On a base without TensorRT nothing is installed: the image then
# builds, and its self-check says in one line that TensorRT is absent.
set -eu
if ! ldconfig -p | grep -q 'libnvinfer\.so\.10'; then
  echo "ckvision: no libnvinfer.so.10 in this base image: TensorRT bindings not installed"
  exit 0
fi
/tmp/build/pip-install.sh -r /tmp/build/requirements-tensorrt.lock
