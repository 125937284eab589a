# Everything runs from a project-local virtualenv that these targets create.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SWAGGER_UI_VERSION ?= 5.35.0

.PHONY: run test lint typecheck unit clean openapi swagger-ui

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## Start the whole service locally (emulated AWS, API on http://127.0.0.1:$${PORT:-8000}).
run: $(STAMP)
	$(BIN)/python -m local.run

## Lint, type-check and run every test.
test: lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Write openapi.json (and the copy Lambda serves) from the routes and the schemas.
openapi: $(STAMP)
	$(BIN)/python -m tools.openapi

## Refresh the vendored Swagger UI assets from npm (commit the result).
swagger-ui:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
	  && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz \
	  && cp package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE package/NOTICE \
	     $(CURDIR)/chalicelib/apidocs/swagger-ui/ \
	  && echo "$(SWAGGER_UI_VERSION)" > $(CURDIR)/chalicelib/apidocs/swagger-ui/VERSION \
	  && rm -rf $$tmp && echo "swagger-ui-dist $(SWAGGER_UI_VERSION) in chalicelib/apidocs/swagger-ui/"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
