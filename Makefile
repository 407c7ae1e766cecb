# The two commands of the README: `make serve` and `make test`. Each sets up what it needs.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PORT   ?= 3000
# Which container image `make image` / `make image-check` build and check: gpu (bentofile.yaml) or cpu
# (bentofile.cpu.yaml: no torch, OpenVINO with the INT8 model). docs/container.md.
VARIANT ?= gpu
export BENTOML_DO_NOT_TRACK := true

.PHONY: serve test lint typecheck build clean lock bench wheels image image-check deploy

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
	$(VENV)/bin/mypy service infra bench deploy

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
## VARIANT=gpu (default) or VARIANT=cpu.
image: $(VENV)/.installed
	VARIANT=$(VARIANT) container/build.sh

## Run the image hardened and check it against `bentoml serve` (after `make image`; same VARIANT).
image-check: $(VENV)/.installed
	VARIANT=$(VARIANT) container/check.sh

## A stack from this clone to a live endpoint: preflight, bento, image, ECR push, `pulumi up`, smoke test
## (docs/deploy.md, "First deploy"). Re-run to resume; DEPLOY_ARGS e.g. --allow-untrained, --engine podman.
deploy: $(VENV)/.installed
	@test -n "$(STACK)" || { echo "usage: make deploy STACK=<stack> (its configuration: Pulumi.<stack>.yaml)" >&2; exit 2; }
	$(PY) -m deploy --stack $(STACK) $(DEPLOY_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## Re-pin requirements.lock.txt and requirements.cpu.lock.txt after changing requirements*.txt (needs the package index).
lock: $(VENV)/.installed
	$(VENV)/bin/uv pip compile requirements.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-header --no-annotate --quiet -o requirements.lock.txt
	$(VENV)/bin/uv pip compile requirements.cpu.txt --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --no-header --no-annotate --quiet -o requirements.cpu.lock.txt
