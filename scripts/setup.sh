#!/usr/bin/env bash
# Installs the Debian packages that camgate's build and tests need, when any
# is missing. Safe to run again: it only calls apt-get when something lacks.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  libevent-dev libssl-dev libgmime-3.0-dev libyaml-dev libsqlite3-dev
  libcrypt-dev libmosquitto-dev libjansson-dev libcmocka-dev
  libcurl4-openssl-dev libturbojpeg0-dev
  # swaks needs Net::SSLeay for STARTTLS; it is only a recommendation of swaks
  mosquitto mosquitto-clients swaks libnet-ssleay-perl curl openssl python3 sqlite3
  python3-aiosmtpd
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'
  then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "setup: not root and no sudo; as root, run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The broker package may start a system-wide mosquitto on 1883; camgate's
# tests start their own on free ports and do not need it.
echo "setup: done"
