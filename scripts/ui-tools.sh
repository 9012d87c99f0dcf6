#!/usr/bin/env bash
# Install what the tests need to look at the command line and the dashboard as
# a person would: tmux (a real terminal for `mpp ledger report`) and Chromium
# (a headless browser that screenshots `mpp ledger serve`), both from Debian.
# Idempotent and fast when already installed. Prints the chromium path on
# stdout; everything else goes to stderr.
set -euo pipefail

need=()
command -v tmux >/dev/null 2>&1 || need+=(tmux)
command -v chromium >/dev/null 2>&1 || need+=(chromium)

if [ "${#need[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "ui-tools: ${need[*]} missing and there is no apt-get to install them" >&2
        exit 1
    fi
    as_root=()
    if [ "$(id -u)" -ne 0 ]; then
        as_root=(sudo -n)
    fi
    echo "ui-tools: installing ${need[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet: update only when the install needs it.
    if ! "${as_root[@]}" apt-get install -y -qq "${need[@]}" >&2; then
        "${as_root[@]}" apt-get update -qq >&2
        "${as_root[@]}" apt-get install -y -qq "${need[@]}" >&2
    fi
fi

command -v tmux >/dev/null
command -v chromium
