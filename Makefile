# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint clean browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip uninstall -q -y segsuite 2>/dev/null || true  # the old distribution (top-level core, domains)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py

# Headless Chromium + chromedriver for the demo page's browser test (tests/core/test_serve.py); where apt-get
# is unavailable (or not root) the test is skipped and says why.
browser:
	@if command -v chromedriver >/dev/null && { command -v chromium || command -v chromium-browser; } >/dev/null; then \
		:; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
			|| echo "browser: could not install chromium; the browser test will be skipped"; \
	else \
		echo "browser: apt-get unavailable or not root; the browser test will be skipped"; \
	fi

# The suite on every core (at most 4: each worker holds its own torch), one torch thread per worker (tests/conftest.py);
# a domain's tests stay on one worker, so its trained fixtures are made once. 7 min on 2 cores, 11.5 min in one process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)

test: $(STAMP) browser
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadgroup  # not python -m: the installed package is tested

bench: $(STAMP)
	$(PY) scripts/benchmark.py

lint: $(STAMP)
	$(VENV)/bin/ruff check segsuite core domains scripts tests

clean:
	rm -rf outputs multirun .pytest_cache
