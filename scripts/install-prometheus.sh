#!/usr/bin/env bash
# Install Debian's prometheus package (gives `prometheus` and `promtool`) unless both are already present.
#
# Idempotent: a second run does nothing. Works on a fresh Debian 12 machine as root (or through sudo).
# The package's own service is not started during installation (the tests run their own Prometheus
# server on a random port); the package still enables it for the next boot, where systemd runs:
# `systemctl disable --now prometheus` if that is not wanted.
set -euo pipefail
. "$(dirname "$0")/apt-install.sh"

if have promtool && have prometheus; then
    echo "install-prometheus: $(promtool --version 2>&1 | head -n1) already installed"
    exit 0
fi

apt_install install-prometheus prometheus

if ! have promtool || ! have prometheus; then
    echo "install-prometheus: the 'prometheus' package did not provide promtool and prometheus" >&2
    exit 1
fi
echo "install-prometheus: installed $(promtool --version 2>&1 | head -n1)"
