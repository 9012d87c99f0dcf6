#!/usr/bin/env bash
# Install the EVM chain-test tools from the npm registry into ./node_modules,
# exactly as pinned by package.json / package-lock.json:
#   @foundry-rs/anvil-linux-amd64  the local EVM node (its binary ships in the package)
#   solc                           the Solidity compiler (solc-js) for contracts/*.sol
# Idempotent and fast when already installed (a stamp of the lock file's hash).
# Prints the anvil binary's absolute path on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ANVIL="$PWD/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
STAMP="node_modules/.mpp-chain-tools"

if ! command -v npm >/dev/null 2>&1; then
    echo "chain-tools: npm is not installed (needed for anvil and solc)" >&2
    exit 1
fi

want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -x "$ANVIL" ] || [ ! -f node_modules/solc/package.json ] \
    || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "chain-tools: installing anvil and solc (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$want" > "$STAMP"
fi

"$ANVIL" --version >/dev/null
echo "$ANVIL"
