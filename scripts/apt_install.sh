#!/usr/bin/env bash
# Shared by the setup_*.sh scripts: install Debian packages with apt-get, as root or through sudo.
#
#   source scripts/apt_install.sh
#   apt_install "the Redis queue tests" optional --no-install-recommends redis-server
#
# Arguments after the second that start with "-" go to apt-get install as options.
# "optional": without root or sudo, say that the tests which need it will be skipped and return 1
# (the caller exits 0). "required": say what is missing and exit 1.
apt_install() {
  local purpose=$1 need=$2
  shift 2
  local sudo="" names="" word
  for word in "$@"; do
    [[ $word == -* ]] || names="${names:+$names }$word"
  done
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null; then
      if [ "$need" = required ]; then
        echo "$names missing and no root or sudo to install it (apt-get install $names), needed for $purpose" >&2
        exit 1
      fi
      echo "$names missing and no root or sudo to install it: $purpose will be skipped" >&2
      return 1
    fi
    sudo=sudo
  fi
  echo "==> installing Debian's $names for $purpose"
  $sudo apt-get update -qq
  # policy-rc.d is not ours to change: a package may try to start its service; that is harmless
  # (the tests start their own servers on free ports) and fails quietly in containers.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# The prefix for the callers' own follow-up commands: empty as root, else sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}
