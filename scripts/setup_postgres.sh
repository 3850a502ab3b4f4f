#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the PostgreSQL test pass when they are missing.
# Only the binaries are needed: the tests create, start and delete their own throwaway cluster
# (scripts/pgserver.py), so the service Debian's package starts is stopped again.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || [ -n "${REALFAKE_PG_BIN:-}" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] && ! command -v sudo >/dev/null; then
  echo "PostgreSQL is missing and there is no root or sudo to install it (apt-get install postgresql)" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" != 0 ] && SUDO=sudo
echo "==> installing Debian's postgresql for the PostgreSQL test pass"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
# The package starts a system cluster on port 5432 where an init system runs; the tests never use it.
if command -v pg_ctlcluster >/dev/null; then
  for cluster in /etc/postgresql/*/main; do
    [ -d "$cluster" ] || continue
    version="$(basename "$(dirname "$cluster")")"
    $SUDO pg_ctlcluster "$version" main stop 2>/dev/null || true
  done
fi
