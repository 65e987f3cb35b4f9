#!/usr/bin/env bash
# Install the Debian packages tlsharness needs, only those missing.
# As root: apt-get install them.  Otherwise: print the exact command, exit 1.
#   tools/system-deps.sh        what setup needs
#   tools/system-deps.sh libs   what the source builds need too (make libs)
set -u
PKGS="gcc make pkg-config openssl dpkg-dev libssl-dev libwolfssl-dev libmbedtls-dev libgnutls28-dev elfutils bpftrace python3-venv chromium kamailio kamailio-tls-modules"
if [ "${1:-}" = libs ]; then
  PKGS="$PKGS g++ cmake autoconf automake libtool perl nettle-dev libgmp-dev libtasn1-6-dev libidn2-dev bison flex autopoint"
fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" -ne 0 ]; then
  echo "tlsharness: missing Debian packages:$missing" >&2
  echo "run: sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && $cmd -qq >/dev/null || { echo "tlsharness: apt-get failed: $cmd" >&2; exit 1; }
