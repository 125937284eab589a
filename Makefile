# Everything runs from a project-local virtualenv that these targets create.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Processes for the unit, simulation, integration and infra tests (pytest-xdist).
TEST_WORKERS ?= 2
# Debian's Chromium and its matching driver, for the browser check of /docs.
CHROMIUM     := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
SWAGGER_UI_VERSION ?= 5.35.0
# The operator console's libraries (chalicelib/console/) and the accessibility checker its
# browser tests inject (tests/e2e/axe/, never deployed).
HTM_VERSION    ?= 3.1.1
PREACT_VERSION ?= 10
UPLOT_VERSION  ?= 1.6.32
AXE_VERSION    ?= 4.10.3

# AWS deployment (see README, "Deploying to AWS").
STAGE     ?= dev
OUT       ?= build/$(STAGE)
STACK     ?= notify-$(STAGE)
S3_BUCKET ?=
ALARM_TOPIC_ARN ?=
TRACING         ?=
API_RATE_LIMIT  ?=
API_BURST_LIMIT ?=
# The template's parameters `make deploy` sets (infra/template.yaml says what each does).
OVERRIDES = $(strip $(if $(ALARM_TOPIC_ARN),AlarmTopicArn=$(ALARM_TOPIC_ARN)) \
  $(if $(TRACING),Tracing=$(TRACING)) $(if $(API_RATE_LIMIT),ApiRateLimit=$(API_RATE_LIMIT)) \
  $(if $(API_BURST_LIMIT),ApiBurstLimit=$(API_BURST_LIMIT)))
AWS       ?= aws

.PHONY: run emulator test lint typecheck bench clean package deploy openapi browser swagger-ui \
  console-vendor axe-vendor screenshots

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

## Start the whole service locally (emulated AWS, API on http://127.0.0.1:$${PORT:-8000}).
run: $(STAMP)
	$(BIN)/python -m local.run

## Everything but the HTTP API (emulator on 127.0.0.1:$${MOTO_PORT:-4800}), for
## `chalice local --stage local` in another terminal.
emulator: $(STAMP)
	$(BIN)/python -m local.run --no-api

## Lint, type-check and run every test (the browser check needs Chromium: see `browser`).
## The quick kinds run on TEST_WORKERS processes; the end-to-end tests after them, one at
## a time (they run the real stack in real time and must not share the cores).
test: lint typecheck browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not e2e"
	$(BIN)/python -m pytest -m e2e

## Every benchmark (throughput, AWS requests per message, fan-out, stats, cold start,
## rate limits, bulk import).
bench: $(STAMP)
	$(BIN)/python -m bench.run_all

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## Write the deployable template for $(STAGE) to $(OUT)/sam.yaml (+ deployment.zip), checked.
## The zip leaves out the AWS SDK the Lambda runtime has (BUNDLE_AWS_SDK=1 keeps it).
# Offline except for PyPI (chalice fetches Lambda wheels once, cached in .chalice/deployments).
package: $(STAMP)
	rm -rf $(OUT)
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-$${AWS_REGION:-us-east-1}} \
	  $(BIN)/chalice package --stage $(STAGE) --merge-template infra/template.yaml $(OUT)
	$(if $(BUNDLE_AWS_SDK),,$(BIN)/python -m infra.trim_package $(OUT)/deployment.zip)
	$(BIN)/python -m infra.pin_stage $(OUT)/sam.yaml $(STAGE)
	$(BIN)/cfn-lint -t $(OUT)/sam.yaml

## Deploy $(STAGE) with the AWS CLI: make deploy STAGE=dev S3_BUCKET=<bucket for the code>
## The template goes through the bucket too: inline, CloudFormation takes 51,200 bytes at most.
deploy: package
	@test -n "$(S3_BUCKET)" || { echo "usage: make deploy STAGE=$(STAGE) S3_BUCKET=<bucket>"; exit 1; }
	@command -v $(AWS) >/dev/null || { echo "deploying needs the AWS CLI ($(AWS))"; exit 1; }
	@name=$$($(BIN)/python -c 'import json, sys; print(json.load(open(".chalice/config.json"))["stages"][sys.argv[1]]["environment_variables"]["SENDER_TOKEN_PARAMETER"])' $(STAGE)) && \
	  $(AWS) ssm get-parameter --name "$$name" --query Parameter.Type --output text | grep -qx SecureString || \
	  { echo "first store the provider token: aws ssm put-parameter --type SecureString --name $$name --value <token>"; exit 1; }
	$(AWS) cloudformation package --template-file $(OUT)/sam.yaml --s3-bucket $(S3_BUCKET) \
	  --s3-prefix $(STACK) --output-template-file $(OUT)/packaged.yaml
	$(AWS) cloudformation deploy --template-file $(OUT)/packaged.yaml --stack-name $(STACK) \
	  --s3-bucket $(S3_BUCKET) --s3-prefix $(STACK) \
	  --capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --no-fail-on-empty-changeset \
	  $(if $(OVERRIDES),--parameter-overrides $(OVERRIDES))
	$(AWS) cloudformation describe-stacks --stack-name $(STACK) --query 'Stacks[0].Outputs' --output table

## Write openapi.json (the file Lambda serves; the top-level one links to it) from the
## routes, the descriptions beside them in chalicelib/api/ and the schemas.
openapi: $(STAMP)
	$(BIN)/python -m tools.openapi

## Install Debian's chromium + chromium-driver when absent (as root, or through sudo).
## Fails loudly when they cannot be installed: the browser test never skips.
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(CHROMEDRIVER) ]; then exit 0; fi; \
	command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install Chromium and chromedriver at $(CHROMIUM), $(CHROMEDRIVER)"; exit 1; }; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	echo "installing chromium and chromium-driver (Debian packages)"; \
	for attempt in 1 2 3; do $$SUDO apt-get update -q && break; sleep 5; done; \
	$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver \
	  || { echo "could not install chromium and chromium-driver"; exit 1; }
	@$(CHROMIUM) --version 2>/dev/null && $(CHROMEDRIVER) --version

## Refresh the vendored Swagger UI assets from npm (commit the result).
swagger-ui:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
	  && tar xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz \
	  && cp package/swagger-ui-bundle.js package/swagger-ui.css package/LICENSE package/NOTICE \
	     $(CURDIR)/chalicelib/apidocs/swagger-ui/ \
	  && echo "$(SWAGGER_UI_VERSION)" > $(CURDIR)/chalicelib/apidocs/swagger-ui/VERSION \
	  && rm -rf $$tmp && echo "swagger-ui-dist $(SWAGGER_UI_VERSION) in chalicelib/apidocs/swagger-ui/"

## Refresh the console's vendored libraries from npm (commit the result): htm's one-module
## build of Preact with hooks and htm, and uPlot. Preact's licence comes from its own package,
## as the module bundles it.
console-vendor:
	@tmp=$$(mktemp -d) && cd $$tmp \
	  && npm pack --silent htm@$(HTM_VERSION) uplot@$(UPLOT_VERSION) preact@$(PREACT_VERSION) >/dev/null \
	  && for f in *.tgz; do mkdir $${f%.tgz} && tar xzf $$f -C $${f%.tgz}; done \
	  && dest=$(CURDIR)/chalicelib/console \
	  && cp htm-$(HTM_VERSION)/package/preact/standalone.module.js $$dest/preact-htm.js \
	  && cp htm-$(HTM_VERSION)/package/LICENSE $$dest/htm.LICENSE \
	  && cp preact-*/package/LICENSE $$dest/preact.LICENSE \
	  && cp uplot-$(UPLOT_VERSION)/package/dist/uPlot.esm.js $$dest/uPlot.esm.js \
	  && cp uplot-$(UPLOT_VERSION)/package/dist/uPlot.min.css $$dest/uPlot.min.css \
	  && cp uplot-$(UPLOT_VERSION)/package/LICENSE $$dest/uPlot.LICENSE \
	  && printf 'htm %s (preact/standalone.module.js as preact-htm.js)\nuplot %s (dist/uPlot.esm.js, dist/uPlot.min.css)\n' \
	     $(HTM_VERSION) $(UPLOT_VERSION) > $$dest/VENDOR \
	  && rm -rf $$tmp && echo "htm $(HTM_VERSION), uplot $(UPLOT_VERSION) in chalicelib/console/"

## Refresh axe-core, which the console's browser tests inject (tests only, never deployed).
axe-vendor:
	@tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null \
	  && tar xzf axe-core-$(AXE_VERSION).tgz \
	  && mkdir -p $(CURDIR)/tests/e2e/axe \
	  && cp package/axe.min.js package/LICENSE $(CURDIR)/tests/e2e/axe/ \
	  && echo "$(AXE_VERSION)" > $(CURDIR)/tests/e2e/axe/VERSION \
	  && rm -rf $$tmp && echo "axe-core $(AXE_VERSION) in tests/e2e/axe/"

## Screenshots of the console's screens into docs/console/ (the README shows them): the
## console's browser test run with CONSOLE_SCREENSHOTS set.
screenshots: $(STAMP) browser
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(BIN)/python -m pytest -q tests/e2e/test_console_browser.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
