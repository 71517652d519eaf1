#!/usr/bin/env bash
# Installs the Debian packages named as arguments (nothing if none), as root or through sudo; quiet unless it fails.
# Used by test.sh and e2e.sh for what the tests need and the machine lacks.
set -euo pipefail
(($#)) || exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "$(basename "${0%/*}")/apt-install.sh: installing $*" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
