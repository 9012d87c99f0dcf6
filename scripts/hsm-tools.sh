#!/usr/bin/env bash
# Install SoftHSM2 (the Debian package softhsm2) for the PKCS#11 signer tests.
# SoftHSM is a software PKCS#11 token: the tests create a token in a temporary
# directory (SOFTHSM2_CONF), generate non-extractable keys inside it and sign
# through it, exactly as with a hardware HSM.
# Idempotent and fast when already installed. Prints the PKCS#11 module's
# absolute path on stdout; everything else goes to stderr.
set -euo pipefail

find_module() {
    local candidate
    for candidate in \
        /usr/lib/softhsm/libsofthsm2.so \
        /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/local/lib/softhsm/libsofthsm2.so; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if ! command -v softhsm2-util >/dev/null 2>&1 || ! find_module >/dev/null; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "hsm-tools: softhsm2 is missing and there is no apt-get to install it" >&2
        exit 1
    fi
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        as_root=(sudo -n)
    fi
    echo "hsm-tools: installing softhsm2 (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update only when the install needs it.
    if ! "${as_root[@]}" apt-get install -y -qq softhsm2 >&2; then
        "${as_root[@]}" apt-get update -qq >&2
        "${as_root[@]}" apt-get install -y -qq softhsm2 >&2
    fi
fi

softhsm2-util --version >/dev/null
find_module
