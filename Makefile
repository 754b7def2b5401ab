# realtime_saas — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# pytest-xdist workers: one per core by default.
TEST_WORKERS ?= auto
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint format migrate superuser fakes check-deploy fuzz screenshots clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Runtime only (migrate, superuser, check-deploy); + the fakes and honcho (run); + test tools (test, lint).
$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-run: requirements.txt requirements-fakes.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-fakes.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-fakes.txt requirements-dev.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

run: $(VENV)/.installed-run ## Serve everything on http://127.0.0.1:8000 (granian; daphne on :8001 for the WebSocket; SQLite, fakes, worker+beat, supervisor); Ctrl-C stops it
	$(PY) scripts/run_dev.py

test: lint ## Run the lint, then the whole test suite (DATABASE_URL/REDIS_URL when set, else SQLite)
	bash scripts/install-chromium.sh
	DEBUG=true $(PY) manage.py makemigrations --check --dry-run
	$(PY) -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# mypy checks what pyproject.toml's [tool.mypy] `files` lists; its cache is .mypy_cache/.
lint: $(VENV)/.installed-dev ## Check the code with ruff, then type-check it with mypy
	$(PY) -m ruff check .
	$(PY) -m mypy

format: $(VENV)/.installed-dev ## Fix what ruff can fix
	$(PY) -m ruff check --fix .

migrate: $(VENV)/.installed ## Apply database migrations
	DEBUG=true $(PY) manage.py migrate

superuser: $(VENV)/.installed ## Create a staff account interactively
	DEBUG=true $(PY) manage.py createsuperuser

check-deploy: $(VENV)/.installed ## Django's deployment checklist with production-like settings
	DEBUG=false SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))') \
	  ALLOWED_HOSTS=example.com $(PY) manage.py check --deploy --fail-level WARNING

# A throwaway SQLite database, fakes/openai, fakes/stripe and daphne on free ports (scripts/fuzz.py).
fuzz: $(VENV)/.installed-dev ## Fuzz the REST API with schemathesis, signed in (bounded; FUZZ_ARGS="--max-examples 50")
	$(PY) scripts/fuzz.py $(FUZZ_ARGS)

# The pages of tests/ux/site.py (a site with one of everything) in Chromium with the fakes; the same
# run checks them with axe-core and fails on a serious or critical violation (the PNGs are kept).
screenshots: $(VENV)/.installed-dev ## PNGs of every user and staff page at 1280 and 390 px in var/screenshots/ (and their axe-core check)
	bash scripts/install-chromium.sh
	rm -rf var/screenshots && mkdir -p var/screenshots
	UX_SCREENSHOTS_DIR="$(CURDIR)/var/screenshots" $(PY) -m pytest -p no:cacheprovider -q tests/ux/test_accessibility.py
	@ls var/screenshots/*.png | wc -l | xargs echo "PNGs in var/screenshots/:"

clean: ## Remove the virtualenv and local state (var/: SQLite database, Celery queue)
	rm -rf $(VENV) var staticfiles .mypy_cache
