# One command sets up and runs each job. The venv lives in .venv; torch is installed first, pinned,
# so that the project's range is already satisfied and pip never fetches a CUDA build on its own.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
RUN ?= runs/demo

.PHONY: setup demo first-stage8 test bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# main job: train the tiny-cpu-latent8 preset (diffusion in the 4x8x8 latents of the first stage
# shipped in the package, builtin:tiny-cpu-first-stage8) on the procedural dataset for DEMO_STEPS
# steps (resuming if already there), evaluate it (fast metrics), regenerate 64 images from fresh
# noise under their own tokens (prints MSE and PSNR against the inputs), and write the report (DDIM
# 25 steps; its edits start from each image's DDIM inversion). Timings: benchmarks/RESULTS.md.
DEMO_PRESET ?= tiny-cpu-latent8
DEMO_STEPS ?= 600
demo: setup
	$(VENV)/bin/diffdrl train --config $(DEMO_PRESET) --out $(RUN) --resume train.steps=$(DEMO_STEPS)
	$(VENV)/bin/diffdrl evaluate $(RUN) --preset fast
	$(VENV)/bin/diffdrl sample $(RUN) --num 64
	$(VENV)/bin/diffdrl report $(RUN) --steps 25

# remake the first stage shipped in src/diffdrl/first_stages/tiny-cpu-first-stage8 (2000 steps of
# 32 images; benchmarks/RESULTS.md gives its time and PSNR)
FIRST_STAGE_RUN ?= runs/tiny-cpu-first-stage8
first-stage8: setup
	$(VENV)/bin/diffdrl train-autoencoder --config tiny-cpu-first-stage8 --out $(FIRST_STAGE_RUN) --resume
	cp $(FIRST_STAGE_RUN)/diffusers/* src/diffdrl/first_stages/tiny-cpu-first-stage8/

# the README's test command: lint and formatting first (seconds), then the suite
test: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/train_throughput.py

clean-venv:
	rm -rf $(VENV)
