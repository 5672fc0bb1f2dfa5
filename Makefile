# GemHub: `make run` starts the platform on 127.0.0.1:8000, `make test` runs every test.
SHELL := /bin/bash
# Single-user servers run as per-user unix accounts, which cannot execute a Python under
# /root (pyenv): the venv is made from the system interpreter.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: install install-test run test test-unit clean help env-tools image-tools

help:
	@echo "make run      install everything and start GemHub at http://127.0.0.1:8000"
	@echo "make test     install everything (and test tools) and run all tests"
	@echo "make install  the shared, idempotent install step"

install: $(VENV)/.stamp-install node_modules/.stamp-install data-system-deps $(VENV)/.stamp-labextension

$(VENV)/bin/python:
	@if ! $(PYTHON) -c 'import ensurepip' 2>/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "python3-venv is missing: apt-get install python3-venv" >&2; exit 1; fi; fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# jsonschema's format-nongpl extra (asked for by jupyter-events) brings rfc3987-syntax, whose
# import builds a Lark grammar: 0.85 s of CPU in every server's start, half of it, for a
# check (IRI formats) nothing here uses; jsonschema skips that check without it.
DROP_SLOW_IMPORTS := $(PY) -m pip uninstall -q -y rfc3987-syntax

$(VENV)/.stamp-install: $(VENV)/bin/python pyproject.toml setup.py
	$(PY) -m pip install -q -e .
	$(DROP_SLOW_IMPORTS)
	@touch $@

node_modules/.stamp-install: package.json
	npm install --no-audit --no-fund --loglevel=error
	@touch $@

# The JupyterLab extension (GPU panel): TypeScript built with jlpm/@jupyter/builder into a
# prebuilt (federated) extension, installed into the venv's share/jupyter/labextensions.
# Rebuilt only when its sources change; the build output is never committed.
LABEXT := extensions/labextension
LABEXT_SRC := $(wildcard $(LABEXT)/src/*.ts $(LABEXT)/style/*) $(LABEXT)/package.json \
  $(LABEXT)/tsconfig.json $(LABEXT)/yarn.lock $(LABEXT)/.yarnrc.yml
LABEXT_DEST := $(VENV)/share/jupyter/labextensions/@gemhub/lab

$(VENV)/.stamp-labextension: $(VENV)/.stamp-install $(LABEXT_SRC)
	cd $(LABEXT) && export PATH="$(abspath $(VENV)/bin):$$PATH" && \
	  jlpm install --immutable >/dev/null && jlpm build
	rm -rf $(LABEXT_DEST) && mkdir -p $(dir $(LABEXT_DEST))
	cp -r $(LABEXT)/build/labextension $(LABEXT_DEST)
	@touch $@

# The data service extracts rar archives with bsdtar (Debian libarchive-tools).
.PHONY: data-system-deps
data-system-deps:
	@command -v bsdtar >/dev/null || { if [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libarchive-tools >/dev/null; \
	  else echo "bsdtar is missing (apt-get install libarchive-tools): compressed rar archives cannot be extracted" >&2; fi; }

install-test: install $(VENV)/.stamp-test
	@bash tests/install-system-deps.sh

$(VENV)/.stamp-test: $(VENV)/.stamp-install
	$(PY) -m pip install -q -e '.[test]'
	$(DROP_SLOW_IMPORTS)
	@touch $@

# Terminal tools every environment offers (Debian packages; as root they are installed).
env-tools:
	@command -v tmux >/dev/null && command -v screen >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux screen >/dev/null; \
	  else echo "tmux/screen are missing: apt-get install tmux screen" >&2; fi; }

# Image builds (the images service): buildah in chroot isolation inside bubblewrap, the Debian
# root from debootstrap. (The sandbox's seccomp filter needs libseccomp2, which apt itself
# depends on.)
image-tools:
	@command -v buildah >/dev/null && command -v bwrap >/dev/null && command -v debootstrap >/dev/null && command -v rsync >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends buildah bubblewrap debootstrap rsync libseccomp2 >/dev/null; \
	  else echo "buildah/bwrap/debootstrap are missing: images cannot be built" >&2; fi; }

run: install env-tools image-tools
	$(PY) -m gemhub.hub_config.run

test: install-test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-unit: install-test
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules var $(LABEXT)/node_modules $(LABEXT)/lib $(LABEXT)/build $(LABEXT)/.yarn
