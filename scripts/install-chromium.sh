#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (tests/e2e). Idempotent: does nothing when
# /usr/bin/chromium is already there. Never `playwright install`: Playwright's Python package
# (in the virtualenv) drives this system Chromium through `executable_path=/usr/bin/chromium`.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# fonts-liberation: pages render with real glyph metrics; no other extras are needed headless.
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-liberation

/usr/bin/chromium --version
