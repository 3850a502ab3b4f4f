#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests when it is missing. Playwright drives this binary;
# it never downloads a browser of its own.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "chromium missing and no root to install it: browser tests will be skipped" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
echo "==> installing Debian's chromium for the browser tests"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
