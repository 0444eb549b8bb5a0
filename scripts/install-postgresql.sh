#!/usr/bin/env bash
# Install Debian's postgresql package (the server binaries: initdb, pg_ctl, postgres) unless present.
#
# For the matter-store tests: each test session starts a private server of its own, as the `postgres`
# user, in a temporary folder on a free port (tests/pg.py), and stops it. Nothing here starts a server.
# Idempotent: a second run does nothing. Works on a fresh Debian 12 machine as root (or through sudo).
# The package's own cluster is not started during installation; on a machine with systemd it is
# enabled for the next boot: `systemctl disable --now postgresql` if that is not wanted.
set -euo pipefail

have_server() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have() { command -v "$1" >/dev/null 2>&1; }

if have_server; then
    echo "install-postgresql: $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        SUDO="sudo"
    else
        echo "install-postgresql: need root (or sudo) to install the 'postgresql' package" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package's own cluster from being started during installation.
POLICY=/usr/sbin/policy-rc.d
ADDED_POLICY=0
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
    $SUDO chmod 755 "$POLICY"
    ADDED_POLICY=1
fi
cleanup() { if [ "$ADDED_POLICY" -eq 1 ]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql

if ! have_server; then
    echo "install-postgresql: the 'postgresql' package did not provide initdb" >&2
    exit 1
fi
echo "install-postgresql: installed $(ls -d /usr/lib/postgresql/*/bin/initdb | head -n1)"
