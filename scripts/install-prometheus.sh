#!/usr/bin/env bash
# Install Debian's prometheus package (gives `prometheus` and `promtool`) unless both are already present.
#
# Idempotent: a second run does nothing. Works on a fresh Debian 12 machine as root (or through sudo).
# The package's own service is not started during installation (the tests run their own Prometheus
# server on a random port); the package still enables it for the next boot, where systemd runs:
# `systemctl disable --now prometheus` if that is not wanted.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }

if have promtool && have prometheus; then
    echo "install-prometheus: $(promtool --version 2>&1 | head -n1) already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        SUDO="sudo"
    else
        echo "install-prometheus: need root (or sudo) to install the 'prometheus' package" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the package's daemon from being started during installation (no systemd in containers anyway).
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
$SUDO apt-get install -y -q --no-install-recommends prometheus

if ! have promtool || ! have prometheus; then
    echo "install-prometheus: the 'prometheus' package did not provide promtool and prometheus" >&2
    exit 1
fi
echo "install-prometheus: installed $(promtool --version 2>&1 | head -n1)"
