# `make test` and `make demo` are the whole set-up: each creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch pair that installs on this project's machines (a CUDA build that also runs on the CPU).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: test test-all demo install lint clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PINS)
	$(PY) -m pip install --quiet -e ".[data,weights,dev]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check cnn gnn bridge engine tests examples benchmarks
	$(VENV)/bin/ruff format --check cnn gnn bridge engine tests examples benchmarks
	$(VENV)/bin/mypy

# The default run leaves out tests marked `slow` (over ~20 s each); `make test-all` runs them too.
test: lint
	MPLBACKEND=Agg $(PY) -m pytest -q

test-all: lint
	MPLBACKEND=Agg $(PY) -m pytest -q -m "not network"

# The comparison on elpv with all five arms, sized for under 10 minutes on 2 CPU cores (373 to 596 s on 2026-12-02 by the state of the machine; 291-299 s on 2026-12-07 with freed memory kept, 413 s at 05:47 on a slower hour, 364 s at 13:11; 233-331 s at 16:20-16:56 on a new, shared machine whose backbone runs up to 1.8x as fast; 804 s at 18:52 on a VM without AVX-512 whose backbone runs 4x slower than that one, 877 s there with the code before the GCN change, 766-777 s there at 21:11-21:57):
# 250 images per class, a 160 px view, 3 seeds. Each run writes a new folder runs/compare-elpv-<time>/ (report.md, results.json, figures/).
DEMO_ARGS ?= --data elpv --max-per-class 250 --image-size 160 --seeds 0,1,2

demo: $(STAMP)
	MPLBACKEND=Agg $(VENV)/bin/pixgraph compare $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
