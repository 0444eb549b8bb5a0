#!/usr/bin/env bash
# Install Debian's postgresql package (the server binaries: initdb, pg_ctl, postgres) unless present.
#
# For the matter-store tests: each test session starts a private server of its own, as the `postgres`
# user, in a temporary folder on a free port (tests/pg.py), and stops it. Nothing here starts a server.
# Idempotent: a second run does nothing. Works on a fresh Debian 12 machine as root (or through sudo).
# The package's own cluster is not started during installation; on a machine with systemd it is
# enabled for the next boot: `systemctl disable --now postgresql` if that is not wanted.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"

have_server() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }

if have_server; then
    echo "install-postgresql: $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1) already installed"
    exit 0
fi

apt_install install-postgresql postgresql

if ! have_server; then
    echo "install-postgresql: the 'postgresql' package did not provide initdb" >&2
    exit 1
fi
echo "install-postgresql: installed $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1)"
