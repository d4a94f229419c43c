#!/usr/bin/env bash
# Install the headless browser used by the end-to-end UI test (tests/browser/).
#
# Debian's `chromium` package is the browser: Playwright's own browser download cannot work here
# (only package registries are reachable), so the test drives /usr/bin/chromium through
# Playwright for Python with `executable_path`. Playwright itself comes from PyPI (the `test`
# extra); this script only takes care of the system package.
#
# Idempotent: does nothing when /usr/bin/chromium already exists. Needs root (or sudo) for apt-get.
#
# Usage: scripts/install-browser.sh            # install if missing, then print the version
#        CHROMIUM=/path/to/chromium scripts/install-browser.sh   # only check that binary
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

log() { printf 'install-browser: %s\n' "$*" >&2; }

if [[ -x "$CHROMIUM" ]]; then
    log "already installed: $CHROMIUM"
else
    if [[ "$CHROMIUM" != /usr/bin/chromium ]]; then
        log "CHROMIUM=$CHROMIUM does not exist and only /usr/bin/chromium can be installed by this script"
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "apt-get not found: install Debian's 'chromium' package (or set CHROMIUM) by hand"
        exit 1
    fi
    SUDO=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO=(sudo)
        else
            log "must run as root (or with sudo available) to apt-get install chromium"
            exit 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "apt-get update"
    "${SUDO[@]}" apt-get update -qq
    log "apt-get install chromium (and fonts so that page text renders in screenshots)"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
    if [[ ! -x "$CHROMIUM" ]]; then
        log "apt-get finished but $CHROMIUM is still missing"
        exit 1
    fi
fi

# A smoke start proves the binary runs headless here (it exits on its own with --version).
"$CHROMIUM" --version
