#!/usr/bin/env bash
# Creates the project's virtualenv (.venv) and installs the package into it,
# once: a second run with an unchanged setup.py does nothing. Sourced by
# run_local.sh and run_tests.sh; EXTRAS selects setup.py extras ("test").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${EXTRAS:-}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating virtualenv in $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
fi

hash="$(sha256sum "$root/setup.py" | cut -c1-16)"
stamp="$venv/.installed-$hash-${extras:-base}"
if [ ! -f "$stamp" ]; then
  echo "bootstrap: installing the package${extras:+ with [$extras]} (first run takes a minute or two)" >&2
  spec="$root"; [ -n "$extras" ] && spec="$root[$extras]"
  log="$venv/install.log"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -e "$spec" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed; the whole log is in $log" >&2
    exit 1
  fi
  find "$venv" -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
  touch "$stamp"
fi
