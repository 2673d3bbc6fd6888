# One entry point for setup, tests, the main job and the benchmarks. Idempotent: re-running skips
# what is already done (the venv is rebuilt only when the pins change).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_ARGS ?= --duration 20 --report
ROS_ENV := source install/setup.bash && export PATH=$(CURDIR)/$(VENV)/bin:$$PATH

.PHONY: setup build test run bench lint clean

setup: build

$(STAMP): requirements.txt constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -c constraints.txt
	touch $(STAMP)

install/.built: $(STAMP) $(shell find src -name '*.py' -o -name '*.xml' -o -name '*.cfg' | sort) $(wildcard launch/*.py config/*.yaml)
	$(VENV)/bin/colcon --log-base log build --base-paths src --build-base build --install-base install --event-handlers console_cohesion- summary-
	touch install/.built

build: install/.built

test: setup
	$(ROS_ENV) && $(PY) -m pytest -q $(PYTEST_ARGS)

run: setup
	$(ROS_ENV) && $(PY) -m rwm_ros.runner --config config/anymal.yaml $(RUN_ARGS)

bench: setup
	$(ROS_ENV) && for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts

clean:
	rm -rf build install log
