#!/usr/bin/env bash
# Install everything buraq's tests need into ./.venv, from nothing:
# buraq, its first-party plugins and the test tools; and, on Debian or Ubuntu as root,
# the system programs some tests drive (Prometheus and promtool, Chromium). Tests that need a
# missing system program skip and say which package to install.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "install: apt-get install ${missing[*]}"
    (apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }) ||
      echo "install: could not install ${missing[*]}; the tests that need them will skip" >&2
  else
    echo "install: ${missing[*]} not found (install them to run every test; those tests skip otherwise)" >&2
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q -e ".[test]" -e ./plugins/buraq-jsonl
