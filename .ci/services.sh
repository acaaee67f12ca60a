#!/usr/bin/env bash
# Make sure the local PostgreSQL server (127.0.0.1:5432, trust auth, database `test`) is running.
set -u
if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start 2>/dev/null || true
  for _ in $(seq 1 20); do pg_isready -h 127.0.0.1 -p 5432 -q && exit 0; sleep 0.5; done
fi
echo "services.sh: PostgreSQL is not running on 127.0.0.1:5432; its tests will be skipped (loudly)." >&2
exit 0
