#!/usr/bin/env bash
# apt_install NAME PACKAGE: install one Debian package without starting its service, for the
# install-*.sh scripts (source this file). Needs root, or sudo; NAME prefixes every message.
#
# The package's daemon is kept from starting during installation by a temporary policy-rc.d (no systemd
# in containers anyway; on a machine with systemd the package still enables it for the next boot).

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
    local name="$1" package="$2" sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if have sudo; then
            sudo="sudo"
        else
            echo "$name: need root (or sudo) to install the '$package' package" >&2
            return 1
        fi
    fi
    export DEBIAN_FRONTEND=noninteractive
    local policy=/usr/sbin/policy-rc.d added=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added=1
    fi
    local rc=0
    { $sudo apt-get update -q && $sudo apt-get install -y -q --no-install-recommends "$package"; } || rc=$?
    if [ "$added" -eq 1 ]; then $sudo rm -f "$policy"; fi
    return "$rc"
}
