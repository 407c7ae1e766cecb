# The two commands of the README: `make serve` and `make test`. Each sets up what it needs.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PORT   ?= 3000
export BENTOML_DO_NOT_TRACK := true

.PHONY: serve test lint typecheck build clean lock bench wheels image image-check

$(VENV)/.installed: requirements.lock.txt requirements-dev.txt infra/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## Run the service on http://localhost:$(PORT) (CPU here; GPU when one is visible).
serve: $(VENV)/.installed
	@# Torchvision ImageNet weights into the model store once; offline, untrained ones with a loud warning.
	[ -n "$$RESNET18_WEIGHTS" ] || $(PY) -m service.import_model --weights imagenet --if-missing --or-untrained
	$(VENV)/bin/bentoml serve --port $(PORT)

## Lint, type-check and run every test.
test: $(VENV)/.installed lint typecheck
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy service infra bench

## The benchmark: raw model vs a plain Flask server vs this service (docs/performance.md).
bench: $(VENV)/.installed
	$(PY) -m bench

## Wheels for bench/gpu_check.sh on a GPU machine without a package index (Python 3.12, torch preinstalled).
wheels: $(VENV)/.installed
	$(PY) -m bench.wheels --dest wheels --python-version 3.12

## Build the bento (GPU container recipe + model) into the BentoML store.
build: $(VENV)/.installed
	$(VENV)/bin/bentoml build

## The real container image, built here without Docker (podman + a local stand-in base): docs/container.md.
image: $(VENV)/.installed
	container/build.sh

## Run the image hardened and check it against `bentoml serve` (after `make image`).
image-check: $(VENV)/.installed
	container/check.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Re-pin requirements.lock.txt after changing requirements.txt (needs the package index).
lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile requirements.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-header --no-annotate --quiet -o requirements.lock.txt
