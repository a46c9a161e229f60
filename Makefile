# One command each for a newcomer: `make demo` and `make test` install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

# CPU torch goes in first, from its own pin: if another package pulled torch in, pip would pick
# the newest build with several GB of CUDA libraries.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/lorebot demo

test: install
	$(BIN)/python -m pytest --doctest-modules knowledge bot training tests

bench: install
	$(BIN)/python benchmarks/retrieval_quality.py
	$(BIN)/python benchmarks/answer_quality.py
	$(BIN)/python benchmarks/query_latency.py
	$(BIN)/python benchmarks/ingest_throughput.py
	$(BIN)/python benchmarks/ask_memory.py
	$(BIN)/python benchmarks/slack_mentions.py
	$(BIN)/python benchmarks/slack_history.py
	$(BIN)/python benchmarks/first_token.py
	$(BIN)/python benchmarks/lora_training.py

clean:
	rm -rf $(VENV) .lorebot .pytest_cache
