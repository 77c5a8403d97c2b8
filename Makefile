# Two commands on a fresh Debian machine, as root:
#   make demo   set everything up, then run a whole trading day on the local default
#   make test   set everything up, then lint and run the whole test suite
# Each step is done once: the stamps below make reruns skip what is already done.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The security scanners (tests/security): each in a virtualenv of its own, since
# they pin boto3, botocore, pydantic ... differently from the project and each other.
SCAN := .venv-scan
export PATH := $(CURDIR)/$(BIN):$(PATH)

APT_PACKAGES := debootstrap systemd-container apt-cacher-ng iproute2 openssh-client rsync make
APT_STAMP := /var/lib/simpletrader/.apt-$(shell echo $(APT_PACKAGES) | sha256sum | cut -c1-12)

.PHONY: demo test lint lint-python unit setup host-packages bench clean aws-check

demo: setup
	$(BIN)/python -m devtools.demo

# The suite runs in parallel workers: one alone waits on test hosts and the
# emulator; four keep both CPUs busy (BENCHMARKS.md, "The test suite"). Tests
# that share a module's host or stack are kept on one worker (xdist_group marks).
TEST_WORKERS ?= 4

# yamllint and ansible-lint run inside the suite (tests/ansible/test_ansible_lint.py, the same
# commands as `make lint`): run here as well, they would add their 12 s again before pytest starts.
test: setup lint-python
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# Only the tests that need neither root nor a test host, in the same workers
# (3.4 min against 6.1 serial, BENCHMARKS.md). UNIT_WORKERS=0 runs them in this
# process, quicker for a few: make unit UNIT_WORKERS=0 PYTEST_ARGS="-k doctor".
UNIT_WORKERS ?= $(TEST_WORKERS)

unit: setup
	$(BIN)/python -m pytest -m "not root and not testhost" -n $(UNIT_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The host routine (roles/workspace_sync/files/simpletrader_workspace) runs on Python 3.9; this
# mypy checks no older target than 3.10, so 3.9 itself is held by ruff's py39 target and by
# tests/workspace_sync (3.9 syntax, and a whole day under a real 3.9).
lint-python: setup
	$(BIN)/ruff check . roles/workspace_sync/files/simpletrader_workspace
	$(BIN)/mypy provision lambda devtools bench
	$(BIN)/mypy --strict --python-version 3.10 roles/workspace_sync/files/simpletrader_workspace

lint: lint-python
	$(BIN)/yamllint -s .
	# Its syntax checks ask no AWS: an inventory without hosts instead of the stack's EC2 one.
	cd $(CURDIR) && ANSIBLE_INVENTORY=tests/ansible/lint-inventory.yml $(BIN)/ansible-lint --profile production roles playbooks site.yml

bench: setup
	$(BIN)/python -m bench

# The whole chain on your own AWS account (credentials as for provision): a
# throwaway stack, removed at the end. Asks before it creates anything.
aws-check: setup
	$(BIN)/python -m devtools.awscheck $(AWS_CHECK_ARGS)

setup: $(VENV)/.installed $(SCAN)/.installed host-packages

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || { \
	  echo "make: $(PYTHON) is Python $$($(PYTHON) -c 'import platform; print(platform.python_version())'); ansible-core 2.19 (requirements.txt) needs 3.11 or newer."; \
	  echo "      Install Python 3.11+ and run: make setup PYTHON=python3.11 (or rm -rf $(VENV) first if it was made with the old one)"; \
	  exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

$(SCAN)/.installed: requirements-scan-prowler.txt requirements-scan-policy.txt
	rm -rf $(SCAN)/prowler $(SCAN)/policy
	$(PYTHON) -m venv $(SCAN)/prowler
	$(SCAN)/prowler/bin/python -m pip install --quiet --upgrade pip
	$(SCAN)/prowler/bin/python -m pip install --quiet -r requirements-scan-prowler.txt
	$(PYTHON) -m venv $(SCAN)/policy
	$(SCAN)/policy/bin/python -m pip install --quiet --upgrade pip
	$(SCAN)/policy/bin/python -m pip install --quiet -r requirements-scan-policy.txt
	touch $@

# The test hosts need root and a few Debian packages; without root the
# host-based tests skip with a reason and the rest still run.
host-packages:
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make: not root: skipping apt packages ($(APT_PACKAGES)); tests that need a test host will skip"; \
	elif [ ! -f "$(APT_STAMP)" ]; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	  if [ -n "$$missing" ]; then \
	    echo "make: installing $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  fi; \
	  mkdir -p "$$(dirname $(APT_STAMP))" && touch "$(APT_STAMP)"; \
	fi

clean:
	rm -rf $(VENV) $(SCAN) .pytest_cache .mypy_cache .ruff_cache .state build
