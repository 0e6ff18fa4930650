#!/usr/bin/env bash
# Archive a realistic sample of outbound messages into a local folder.
#
#   ./run_local.sh                 # 5,000 messages, clevertap profile
#   COUNT=20000 PROFILE=braze ./run_local.sh
#   ./run_local.sh --compression zstd --max_in_flight 128   # extra flags go to the pipeline
#
# Creates .venv on first use, generates local_run/input/messages.jsonl.gz
# (all channels of the profile, about 2% bad records), runs the Beam pipeline on
# the DirectRunner into local_run/archive and prints the run summary.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/bootstrap.sh

count="${COUNT:-5000}"
profile="${PROFILE:-clevertap}"
out="${OUT:-local_run}"
input="$out/input/messages-$profile.jsonl.gz"

mkdir -p "$out/input"
.venv/bin/python -m archive.sample --count "$count" --profile "$profile" --out "$input"
rm -rf "$out/archive" "$out/outcomes"
.venv/bin/python -m pipeline.run \
  --input "$input" \
  --profile "$profile" \
  --destination "$out/archive" \
  --outcomes "$out/outcomes" \
  --default_region US \
  "$@"
