#!/usr/bin/env bash
# Install the test-only npm tools into ./node_modules, exactly as pinned by
# package.json / package-lock.json:
#   @foundry-rs/anvil-linux-amd64  the local EVM node, also a local Tempo chain
#                                  with --network tempo (its binary ships in the package)
#   solc                           the Solidity compiler (solc-js) for contracts/*.sol
#   mppx, viem                     the TypeScript reference SDK and its EVM library, run
#                                  with node by the interop tests (tests/peers/mppx/)
# Idempotent and fast when already installed (a stamp of the lock file's hash).
# Prints the anvil binary's absolute path on stdout (last line); everything else
# goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

ANVIL="$PWD/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
STAMP="node_modules/.mpp-chain-tools"
# Each package that must be present after an install (the stamp alone could be stale).
REQUIRED=(solc mppx viem)

for tool in npm node; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "chain-tools: $tool is not installed (needed for anvil, solc and mppx)" >&2
        exit 1
    fi
done

installed() {
    [ -x "$ANVIL" ] || return 1
    local package
    for package in "${REQUIRED[@]}"; do
        [ -f "node_modules/$package/package.json" ] || return 1
    done
}

want=$(sha256sum package-lock.json | cut -d' ' -f1)
if ! installed || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "chain-tools: installing anvil, solc, mppx and viem (npm ci)" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    installed || { echo "chain-tools: npm ci did not install everything" >&2; exit 1; }
    echo "$want" > "$STAMP"
fi

"$ANVIL" --version >/dev/null
echo "$ANVIL"
