# Two commands do all set-up on a fresh clone: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow bench lint clean gpu-prepare gpu-check

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "needs $(PY) (set PY=... to another Python >= 3.10)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/slimkit demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python -m bench all --quick

# The GPU check (docs/gpu-check.md). gpu-prepare runs here: it fills the git-ignored .whl/ with the
# pure-Python wheels slimkit imports that the bare GPU machine lacks, and the demo's MNIST-1D arrays
# (.whl/cache). gpu-check runs there, with that
# machine's own Python (GPU_PY), never .venv: it installs .whl/ and slimkit, then runs bench.gpu.
GPU_PY ?= python3
GPU_WHEELS := torch-pruning mnist1d gymnasium farama-notifications platformdirs

gpu-prepare: $(STAMP)
	rm -rf .whl && mkdir -p .whl
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
	    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
	    -c constraints.txt -d .whl $(GPU_WHEELS)
	$(BIN)/python -c "from bench.gpu.families import cache_data; cache_data('.whl/cache')"
	@ls -R .whl

gpu-check:
	PY=$(GPU_PY) bash bench/gpu/run.sh $(GPU_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
