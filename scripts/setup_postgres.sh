#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the PostgreSQL test pass when they are missing.
# Only the binaries are needed: the tests create, start and delete their own throwaway cluster
# (scripts/pgserver.py), so the service Debian's package starts is stopped again.
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || [ -n "${REALFAKE_PG_BIN:-}" ]; then
  exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install "the PostgreSQL test pass" required postgresql
# The package starts a system cluster on port 5432 where an init system runs; the tests never use it.
if command -v pg_ctlcluster >/dev/null; then
  for cluster in /etc/postgresql/*/main; do
    [ -d "$cluster" ] || continue
    version="$(basename "$(dirname "$cluster")")"
    as_root pg_ctlcluster "$version" main stop 2>/dev/null || true
  done
fi
