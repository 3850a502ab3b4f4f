#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing. Playwright drives this binary;
# it never downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
source "$(dirname "$0")/apt_install.sh"
apt_install "the browser tests" optional chromium || exit 0
