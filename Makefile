# The two commands: `make run` (demo on a fresh machine) and `make test` (lint + the whole suite).
# Other targets: services (real PostgreSQL + Redis + gunicorn + Celery worker + beat), lint,
# stop-db (stop the embedded PostgreSQL), clean. See README.md.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Reinstall whenever a requirements file or the constraints change (the stamp's name is their checksum).
REQUIREMENTS := $(sort $(wildcard requirements*.txt)) constraints.txt
REQ_SUM := $(shell cat $(REQUIREMENTS) 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(REQ_SUM)
PY_OK := import sys; sys.exit(sys.version_info < (3, 11))

HOST ?= 127.0.0.1
PORT ?= 8000
LOCAL_PG_URL := postgres://postgres@127.0.0.1:5432/loyalty
LOCAL_REDIS_URL := redis://127.0.0.1:6379/0
PYTEST_ARGS ?=

.PHONY: help install run test lint services stop-db clean messages

help:
	@echo "make run       venv + install, migrate, load demo data, then web http://$(HOST):$(PORT)/ + Celery"
	@echo "               worker + beat until Ctrl-C (embedded PostgreSQL in .data/pg unless DATABASE_URL is set)"
	@echo "make test      install, ruff, import contracts, pytest -n 2 against PostgreSQL"
	@echo "make services  migrate + gunicorn, Celery worker and beat (Procfile) on PostgreSQL + Redis"
	@echo "make lint      ruff check, ruff format --check, lint-imports"
	@echo "make stop-db   stop the embedded PostgreSQL"
	@echo "make clean     stop the embedded PostgreSQL, delete .data (database, logs, queue, cache, static files) and caches"

install: $(STAMP)

$(STAMP):
	@set -e; \
	if [ -x $(PY) ] && $(PY) -c '$(PY_OK)' 2>/dev/null; then :; else \
	  found=""; \
	  for candidate in $(PYTHON) python3 python3.14 python3.13 python3.12 python3.11; do \
	    if command -v "$$candidate" >/dev/null 2>&1 && "$$candidate" -c '$(PY_OK)' 2>/dev/null; then found="$$candidate"; break; fi; \
	  done; \
	  if [ -z "$$found" ]; then \
	    echo "error: this project needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo missing)." >&2; \
	    echo "       Install Python 3.11+ and run: make $(MAKECMDGOALS) PYTHON=/path/to/python3.11" >&2; \
	    exit 1; \
	  fi; \
	  echo "Creating $(VENV) with $$("$$found" --version)"; \
	  rm -rf $(VENV); \
	  "$$found" -m venv $(VENV) || { echo "error: '$$found -m venv' failed (Debian/Ubuntu: apt-get install python3-venv)" >&2; exit 1; }; \
	fi
	$(PY) -m pip install --disable-pip-version-check --no-input -q -r requirements-dev.txt -c constraints.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# --- make run: the demo on this machine ---------------------------------------------------------
# config/devrun.py: migrate, load_demo, then runserver + Celery worker + beat (broker: files in
# .data/celery unless CELERY_BROKER_URL is set) until Ctrl-C, which stops all three; logs in
# .data/logs. The shell execs it so that make's SIGTERM reaches it directly.
run: export DJANGO_SETTINGS_MODULE := config.settings.local
run: install
	@set -e; \
	if [ -n "$$DATABASE_URL" ]; then \
	  echo "Database: DATABASE_URL ($$DATABASE_URL)"; \
	  $(PY) -m config.embedded_pg ensure-database "$$DATABASE_URL" >/dev/null; \
	else \
	  echo "Database: embedded PostgreSQL in .data/pg ($$($(PY) -m config.embedded_pg url)); 'make stop-db' stops it"; \
	fi
	@exec $(PY) -m config.devrun --host $(HOST) --port $(PORT)

# --- make test: lint + the whole suite against PostgreSQL ---------------------------------------
# Database: DATABASE_URL if set; else the local server at 127.0.0.1:5432 if it answers;
# else the embedded PostgreSQL (.data/pg). pytest-django creates test_<name>_gw0/_gw1 on it.
test: lint
	@set -e; \
	if [ -n "$$DATABASE_URL" ]; then \
	  echo "make test: database from DATABASE_URL"; \
	elif $(PY) -m config.embedded_pg probe $(LOCAL_PG_URL); then \
	  export DATABASE_URL=$(LOCAL_PG_URL); \
	  echo "make test: PostgreSQL at 127.0.0.1:5432"; \
	else \
	  echo "make test: no PostgreSQL answers at 127.0.0.1:5432; using the embedded one in .data/pg"; \
	  DATABASE_URL="$$($(PY) -m config.embedded_pg url)"; \
	  export DATABASE_URL; \
	fi; \
	set -x; \
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# --- make services: the production shape on this machine ---------------------------------------
# Real PostgreSQL and Redis (defaults below, override with DATABASE_URL / CELERY_BROKER_URL),
# production settings with local-only relaxations (plain HTTP, a dev secret key if none is set).
services: install
	@set -e; \
	export PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	  DJANGO_SETTINGS_MODULE=config.settings.production \
	  DATABASE_URL="$${DATABASE_URL:-$(LOCAL_PG_URL)}" \
	  CELERY_BROKER_URL="$${CELERY_BROKER_URL:-$(LOCAL_REDIS_URL)}" \
	  REDIS_URL="$${REDIS_URL:-$(LOCAL_REDIS_URL)}" \
	  DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-make-services-dev-only-key-5f0c9e2b7a4d41c8b3e6a9d2f1c7e8b0}" \
	  DJANGO_ALLOWED_HOSTS="$${DJANGO_ALLOWED_HOSTS:-127.0.0.1,localhost}" \
	  DJANGO_SECURE_SSL_REDIRECT="$${DJANGO_SECURE_SSL_REDIRECT:-0}" \
	  DJANGO_SESSION_COOKIE_SECURE="$${DJANGO_SESSION_COOKIE_SECURE:-0}" \
	  DJANGO_CSRF_COOKIE_SECURE="$${DJANGO_CSRF_COOKIE_SECURE:-0}" \
	  DJANGO_SECURE_HSTS_SECONDS="$${DJANGO_SECURE_HSTS_SECONDS:-0}" \
	  WEB_PORT="$(PORT)"; \
	echo "Database $$DATABASE_URL, broker $$CELERY_BROKER_URL, cache $$REDIS_URL, web http://127.0.0.1:$(PORT)/"; \
	$(PY) -m config.embedded_pg ensure-database "$$DATABASE_URL"; \
	$(PY) manage.py migrate --noinput; \
	$(PY) manage.py collectstatic --noinput --verbosity 0; \
	exec $(VENV)/bin/honcho start

# --- make messages: the portal's French catalog (docs/portal.md, "Languages") ----------------------
# The portal's strings and the rule sentences of workflows/customer_text.py, one catalog in
# portal/locale (the only LOCALE_PATHS entry); every other app and the admin templates are left
# out (an ignored name matches a folder of that name anywhere). Then compile.
MESSAGES_IGNORE := .venv admin bench cards config dashboard docs loyalty notifications rewards tests tiers
messages: install
	$(PY) manage.py makemessages -l fr --no-location --no-obsolete $(foreach d,$(MESSAGES_IGNORE),--ignore='$(d)/*')
	msgfmt --check -o portal/locale/fr/LC_MESSAGES/django.mo portal/locale/fr/LC_MESSAGES/django.po

stop-db:
	@if [ -x $(PY) ]; then $(PY) -m config.embedded_pg stop; else echo "no $(VENV): nothing to stop"; fi

clean: stop-db
	rm -rf .data .ruff_cache .pytest_cache .import_linter_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
