#!/usr/bin/env bash
# The test command: installs what the tests need, starts their servers, runs them all.
#
#   ./run_tests.sh                # everything
#   ./run_tests.sh -k profiles    # extra arguments go to pytest
#
# Needs: python3 (3.10+), go, node/npm, java 17 and maven (to build or fetch the
# test servers), and root for apt-get when the lz4/gzip/zstd command-line tools
# (the tests decompress archived objects with them) or chromium (the web page's
# tests) are missing.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in lz4 gzip zstd; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
# the web page's tests run in a real headless browser: Debian's chromium (Playwright drives it)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "run_tests: installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

EXTRAS=test . scripts/bootstrap.sh

# Real servers for the tests (moto, Azurite, fake-gcs-server, Kafka, Pub/Sub's
# pstest, toxiproxy), fetched from PyPI, npm, the Go module proxy and Maven
# Central into .cache/devservers once; the tests start them on 127.0.0.1.
.venv/bin/python -m devservers install all

# pytest exits 5 when it collected no test: that is a failure here too.
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
