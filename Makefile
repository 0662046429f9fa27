# ck-mlperf-vision: two commands.
#   make demo   set everything up (.venv, ck, software detection, model + dataset packages),
#               then record the four demo runs with ck benchmark and print the results
#   make test   lint, type-check the TensorRT code, run the test suite
# Both are idempotent: nothing already installed is installed again.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ckvision-installed

.PHONY: demo test setup lint typecheck clean-ck-tmp help mutation system-deps gpu

help:
	@echo "make demo         set up .venv + CK and run the recorded demo on EfficientNet-Lite0"
	@echo "make test         lint + type check + pytest (about 15-20 minutes on 2 cores)"
	@echo "make setup        only the .venv (pinned deps, editable ckvision)"
	@echo "make lint         ruff check + ruff format --check"
	@echo "make typecheck    mypy over the package (the TensorRT code against its stubs)"
	@echo "make triton-venv  tritonserver + perf_analyzer env (.venv-triton) for the Triton tests"
	@echo "make test-extras  the large extras only the tests use (DALI, Ray) into .venv"
	@echo "make docker       build the CPU image, run its demo job as you, print the table"
	@echo "make gpu          swap the CPU onnxruntime for onnxruntime-gpu in .venv"
	@echo "make scale-bench  preprocessing + a whole-set accuracy run vs raw loops, peak RSS (SCALE_SOURCE=dir)"
	@echo "make mutation     mutation testing of harness, scorer and settings (about an hour)"
	@echo "make system-deps  apt packages the container and browser tests use (root, Debian)"
	@echo "make clean-ck-tmp remove the run directories of the CK programs"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info; sys.exit(0 if v[:2] == (3, 11) else "ckvision needs Python 3.11 (ck 2.6.4 runs on <= 3.11; the pins need 3.11); set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[export,sample,dev,triton,submission]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "tensorrt-stubs==10.13.0.35.1"
	touch $(STAMP)

setup: $(STAMP)

# The one list of system packages `make test` uses where present (the tests that need one
# skip, naming it, where it is absent): Podman + debootstrap for the container tests,
# Chromium for the HTML report screenshots. Debian/Ubuntu, as root.
SYSTEM_PACKAGES := podman buildah runc debootstrap chromium
system-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES)

GPU_PINS = $(shell $(PYTHON) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gpu"])')
gpu: $(STAMP)
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(GPU_PINS)

demo: $(STAMP)
	$(BIN)/python -m ckvision demo

LINTED := ckvision tests benchmarks soft script package docker

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)  # also run by the test suite (tests/test_typecheck.py)
	$(BIN)/python tests/test_typecheck.py

# Extras only the test suite uses (large; `make demo` never installs them): DALI for the
# JPEG-in engine tests, Ray for the cluster tests. Their tests skip, naming the extra,
# where it is absent.
TEST_EXTRAS := dali,cluster
TEST_STAMP := $(VENV)/.ckvision-test-extras
$(TEST_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(TEST_EXTRAS)]'
	touch $(TEST_STAMP)

.PHONY: test-extras
test-extras: $(TEST_STAMP)

test: lint triton-venv test-extras
	$(BIN)/python -m pytest -q

# Mutation testing of the harness, the scorer and the settings (scope and tests: [tool.mutmut]
# in pyproject.toml). Not part of `make test`: about an hour on 2 busy cores (the LoadGen-driven
# sut/run/ledger mutants are slow; narrow only_mutate for a quick look).
mutation: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results

# Triton server + perf_analyzer env (numpy < 2; PyPI only): tritonserver 2.51 with the
# python backend from nvidia-pytriton, perf_analyzer from tritonclient[all] 2.51.
TRITON_VENV := .venv-triton
TRITON_VENV_PKGS := "nvidia-pytriton==0.7.0" "tritonclient[all]==2.51.0" "numpy==1.26.4" \
                    "onnxruntime==1.32.0" "pillow==13.0.0"
TRITON_STAMP := $(TRITON_VENV)/.ckvision-triton-installed

$(TRITON_STAMP): Makefile
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(TRITON_VENV_PKGS)
	touch $(TRITON_STAMP)

.PHONY: triton-venv
triton-venv: $(TRITON_STAMP)

clean-ck-tmp:
	rm -rf program/*/tmp program/*/runs

# make docker: build the CPU image (docker/image-classification-onnxruntime-cpu), run its main
# job once as you, recording into $(EXPERIMENTS) on this host, and print the table.
# Needs Docker or Podman's API (DOCKER_HOST); BASE_IMAGE=<mirror>@sha256:... to override FROM.
EXPERIMENTS ?= docker-experiments
.PHONY: docker
docker: $(STAMP)
	$(BIN)/python -m ckvision docker build image-classification-onnxruntime-cpu $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))
	mkdir -p $(EXPERIMENTS)
	$(BIN)/python -m ckvision docker run image-classification-onnxruntime-cpu --experiments $(EXPERIMENTS)
	$(BIN)/python -m ckvision results $(EXPERIMENTS)/*/

# make scale-bench SCALE_SOURCE=/data/synth-50k: preprocessing vs a raw loop, the accuracy run
# over the whole set vs raw throughput, peak RSS (benchmarks/scale.py; not part of make test).
SCALE_SOURCE ?= synth-50k
SCALE_MODEL ?= $(shell ls $(HOME)/CK-TOOLS/model-onnx-efficientnet-lite0-export/model.onnx 2>/dev/null)
.PHONY: scale-bench
scale-bench: $(STAMP)
	test -d $(SCALE_SOURCE) || $(BIN)/python -m ckvision dataset synth --images 50000 --out $(SCALE_SOURCE)
	$(BIN)/python benchmarks/scale.py --source $(SCALE_SOURCE) --model $(SCALE_MODEL)
