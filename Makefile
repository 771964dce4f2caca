# dense_assign: `make demo` and `make test` set everything up on first use (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dense_assign-installed
DEMO_CONFIG ?= configs/Synthetic-Converge/fcos_R_18_FPN.py
DEMO_OUTPUT ?= output/demo
PYTEST_ARGS ?=
# make test runs the tests in TEST_WORKERS pytest-xdist processes of one torch thread each, whole
# test files to a process (module fixtures, such as the one training run the train_net.py tests
# share, are built once). TEST_WORKERS=0 runs them in this process, as plain pytest does.
TEST_WORKERS ?= 2

.PHONY: install demo test test-long lint compare compare-ablations benchmark visualize clean-output \
	gpu-kit gpu-rehearsal-env gpu-rehearsal

install: $(STAMP)

# Re-runs only when the installer, its patch or setup.py change (or the venv is missing).
$(STAMP): setup.py .ci/install.sh .ci/patches/detectron2-v0.6.patch
	PYTHON=$(PYTHON) VENV=$(VENV) bash .ci/install.sh
	touch $@

demo: $(STAMP)
	$(PY) train_net.py --config-file $(DEMO_CONFIG) train.output_dir=$(DEMO_OUTPUT)
	@echo "demo: metrics, checkpoints and prediction images are in $(DEMO_OUTPUT)/"

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest tests -m "not long" \
		-n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# black and isort (settings in pyproject.toml) in a venv of their own: detectron2 v0.6 pins an old
# black that does not run with today's click.
LINT_VENV ?= .venv-lint
LINT_PATHS := dense_assign tests configs train_net.py setup.py dev
$(LINT_VENV)/.ready:
	$(PYTHON) -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install -q --disable-pip-version-check 'black==26.10.1' 'isort==9.0.2'
	touch $@

lint: $(LINT_VENV)/.ready
	$(LINT_VENV)/bin/black --check -q $(LINT_PATHS)
	$(LINT_VENV)/bin/isort --check-only -q $(LINT_PATHS)
	@echo "lint: black and isort clean"

test-long: $(STAMP)
	$(PY) -m pytest tests -m long $(PYTEST_ARGS)

# Evidence tools (dense_assign/tools/README.md)
# The converging CPU benchmark (README "The converging CPU benchmark"): every method config of
# configs/Synthetic-Converge, 3 seeds, two 1-thread runs at a time; resumable (--skip-existing).
# The table goes to $(COMPARE_OUTPUT)/results.md, the papers' claims to $(COMPARE_OUTPUT)/claims.md.
# `make compare-ablations` adds the ablation configs (configs/Synthetic-Converge/ablations) to the
# same folder and reports both.
COMPARE_OUTPUT ?= output/compare
COMPARE_SEEDS ?= 0 1 2
COMPARE_JOBS ?= 2
compare: $(STAMP)
	$(PY) -m dense_assign.tools.compare --selection converge --seeds $(COMPARE_SEEDS) \
		--jobs $(COMPARE_JOBS) --output $(COMPARE_OUTPUT) --skip-existing

compare-ablations: $(STAMP)
	$(PY) -m dense_assign.tools.compare --selection converge-all --seeds $(COMPARE_SEEDS) \
		--jobs $(COMPARE_JOBS) --output $(COMPARE_OUTPUT) --skip-existing

BENCHMARK_OUTPUT ?= output/benchmark.json
benchmark: $(STAMP)
	$(PY) -m dense_assign.tools.benchmark --output $(BENCHMARK_OUTPUT)

VIS_CONFIG ?= configs/Synthetic-Detection/atss_R_18_FPN.py
visualize: $(STAMP)
	$(PY) -m dense_assign.tools.visualize_assignment --config-file $(VIS_CONFIG) --num-images 4 \
		--output output/vis_assignment/$(notdir $(basename $(VIS_CONFIG)))

clean-output:
	rm -rf output

# GPU check kit (dev/gpu/README.md): the wheels a registry-less GPU machine needs, in .gpukit/wheels
# (git-ignored; it travels with the working tree), built with .venv's pip; and the Python 3.12
# rehearsal venv (outside the repository, REHEARSAL_VENV) that stands in for that machine on CPU.
# The step-time check compares the training step with the code before the deferred reads
# (dense_assign/deferred.py): that package is copied from git into .gpukit/before.
GPU_BEFORE_REF ?= 25c24b4
REHEARSAL_VENV ?= /work/gpu-rehearsal/venv
gpu-kit: $(STAMP)
	VENV=$(VENV) bash dev/gpu/prepare.sh
	rm -rf .gpukit/before && mkdir -p .gpukit/before
	git archive $(GPU_BEFORE_REF) dense_assign | tar -x -C .gpukit/before
	@echo "gpu-kit: .gpukit/ is $$(du -sh .gpukit | cut -f1) (the device tool carries at most 64 MiB)"

# The GPU check on this CPU machine, in the Python 3.12 rehearsal venv with the kit alone:
# every step but CUDA itself (dev/gpu/README.md).
gpu-rehearsal: gpu-kit gpu-rehearsal-env
	rm -rf output/gpu_rehearsal
	PYTHON=$(REHEARSAL_VENV)/bin/python GPUKIT_SITE=/tmp/gpukit-rehearsal OUT=output/gpu_rehearsal \
		AMP_ITERS=$${AMP_ITERS:-2} T_AMP=900 T_STEP=300 OMP_NUM_THREADS=1 bash dev/gpu/run.sh

gpu-rehearsal-env:
	bash dev/gpu/rehearsal_env.sh
