#!/usr/bin/env bash
# Install Debian's redis-server for the tests of the task queue's Redis mode when it is missing.
# The tests start their own server on a free loopback port; nothing here starts or enables one.
set -euo pipefail
if command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; then exit 0; fi
source "$(dirname "$0")/apt_install.sh"
apt_install "the Redis queue tests" optional --no-install-recommends redis-server || exit 0
