# envd developer entry points. `make run` sets up on first use, then runs the daemon in the foreground.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PORT ?= 49983

.PHONY: setup kernels run test proto bench clean rootfs boot boot-test docker platform platform-test

setup: $(STAMP) kernels

# System packages, the sandbox-like `user` account, the venv with envd (editable) + test deps, the JS SDK.
$(STAMP): pyproject.toml scripts/setup-system.sh scripts/setup-user.sh tests/e2e/js/package.json
	bash scripts/setup-system.sh
	bash scripts/setup-user.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,platform]'
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

# The VM image (rootfs/README.md): bookworm root + rootfs/install.sh -> build/vm/$(FLAVOUR)/rootfs.ext4,
# vmlinuz, initrd.img, firecracker.json. FLAVOUR=code-interpreter adds the kernels (scripts/setup-kernels.sh).
FLAVOUR ?= base
VM_DIR ?= build/vm/$(FLAVOUR)
rootfs:
	bash rootfs/build.sh --flavour $(FLAVOUR) --out $(VM_DIR)

# Boot it under QEMU microvm, wait for /health, /init it, report boot-to-healthy, shut down.
# BOOT_ARGS="--keep" leaves it running (prints E2B_SANDBOX_URL); --accel kvm|tcg, --timeout, --retries.
boot:
	bash scripts/setup-vm-host.sh
	python3 rootfs/boot.py --image-dir $(VM_DIR) $(BOOT_ARGS)

# The SDK smoke suite against the booted VM (tests/vm; slow: a TCG boot is ~1 min on a busy 2-core host).
boot-test: setup
	bash scripts/setup-vm-host.sh
	ENVD_VM_DIR=$(VM_DIR) $(VENV)/bin/pytest tests/vm -v

# The local testing image (rootfs/Dockerfile, same install script) where a Docker engine runs.
DOCKER_TAG ?= envd:local
docker:
	docker build -f rootfs/Dockerfile --build-arg FLAVOUR=$(FLAVOUR) -t $(DOCKER_TAG) .

# The local E2B-compatible platform (envd/platform, README "Local platform"): API on :3000 (E2B_API_URL),
# sandbox proxy on :3001 (E2B_SANDBOX_URL); sandboxes are QEMU microVMs of the images in build/vm (make rootfs,
# FLAVOUR=code-interpreter for that template). PLATFORM_ARGS="--api-key KEY --pool 2 ...".
platform: setup
	bash scripts/setup-platform-host.sh
	$(VENV)/bin/envd platform $(PLATFORM_ARGS)

# tests/platform: the unmodified SDKs in normal mode against it (slow: one cold TCG boot per template and run).
platform-test: setup
	bash scripts/setup-platform-host.sh
	ENVD_PLATFORM_IMAGES=$(CURDIR)/build/vm $(VENV)/bin/pytest tests/platform -v
