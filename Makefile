# envd developer entry points. `make run` sets up on first use, then runs the daemon in the foreground.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PORT ?= 49983

.PHONY: setup kernels run test proto bench clean

setup: $(STAMP) kernels

# System packages, the sandbox-like `user` account, the venv with envd (editable) + test deps, the JS SDK.
$(STAMP): pyproject.toml scripts/setup-system.sh scripts/setup-user.sh tests/e2e/js/package.json
	bash scripts/setup-system.sh
	bash scripts/setup-user.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	cd tests/e2e/js && npm ci --no-audit --no-fund --loglevel=error
	touch $(STAMP)

# Kernels of every language (venv + kernelspecs, R/JDK from apt) for the code-interpreter API on port 49999 (envd -kernels-prefix).
KERNELS ?= /opt/envd-kernels
kernels:
	bash scripts/setup-kernels.sh $(KERNELS)

# The daemon as a local debug sandbox: no MMDS, default user `user`, port 49983 (what E2B_DEBUG=true SDKs use).
run: setup
	$(VENV)/bin/envd -isnotfc -port $(PORT) -default-user user

test: setup
	$(VENV)/bin/pytest

proto: setup
	$(PY) proto/generate.py

bench: setup
	$(PY) -m tests.bench

clean:
	rm -rf $(VENV) tests/e2e/js/node_modules
