#!/usr/bin/env bash
# Install the peer proxies the real-socket bench compares against (nginx, HAProxy) from Debian's
# packages when they are absent. The bench skips a missing peer with a message; this makes it present.
set -euo pipefail
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q "${need[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${need[@]}" >/dev/null; }
# The packages start system services; the bench runs its own instances on other ports.
$SUDO systemctl stop nginx haproxy >/dev/null 2>&1 || $SUDO service nginx stop >/dev/null 2>&1 || true
$SUDO service haproxy stop >/dev/null 2>&1 || true
