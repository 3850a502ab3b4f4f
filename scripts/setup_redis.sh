#!/usr/bin/env bash
# Install Debian's redis-server for the tests of the task queue's Redis mode when it is missing.
# The tests start their own server on a free loopback port; nothing here starts or enables one.
set -euo pipefail
if command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ]; then exit 0; fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "redis-server missing and no root to install it: the Redis tests will be skipped" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
echo "==> installing Debian's redis-server for the Redis queue tests"
$SUDO apt-get update -qq
# policy-rc.d is not ours to change: the package may try to start a service; that is harmless
# (it listens on 6379, which the tests never use) and fails quietly in containers.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
