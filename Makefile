# One command sets up and runs each job. The venv lives in .venv; torch is installed first, pinned,
# so that the project's range is already satisfied and pip never fetches a CUDA build on its own.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=
RUN ?= runs/demo

.PHONY: setup demo test bench clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# main job: train the tiny-cpu preset on the procedural dataset for DEMO_STEPS steps (resuming if
# already there; 400 of the preset's 600 so that the whole job fits 15 minutes on 2 slow cores, 11.7
# measured: DCI D (fast) 0.23 against 0.29 at 600, benchmarks/RESULTS.md), evaluate it (fast metrics),
# regenerate 64 images from fresh noise under their own tokens (prints MSE and PSNR against the
# inputs), and write the report (DDIM 25 steps; its edits start from each image's DDIM inversion).
DEMO_STEPS ?= 400
demo: setup
	$(VENV)/bin/diffdrl train --config tiny-cpu --out $(RUN) --resume train.steps=$(DEMO_STEPS)
	$(VENV)/bin/diffdrl evaluate $(RUN) --preset fast
	$(VENV)/bin/diffdrl sample $(RUN) --num 64
	$(VENV)/bin/diffdrl report $(RUN) --steps 25

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/train_throughput.py

clean-venv:
	rm -rf $(VENV)
