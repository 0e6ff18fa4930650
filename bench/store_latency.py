"""Scenario b: a latency-bound store, the pipeline beside a raw PUT loop and the naive pipeline.

An S3-compatible server on loopback (gofakes3, in memory: see
devservers/gofakes3.py for why not moto) behind Toxiproxy, a real TCP proxy
that holds every response for 20 ms. The same SMS-sized messages are archived
by:

- pipeline: `python -m pipeline.run` with the S3 destination: two
  multi-processing workers, each with `--max_in_flight` writes in flight,
  through the store's direct path (obstore, the default where it applies);
- floor: `bench.putloop`, the same PutObject requests (prepared beforehand,
  untimed) with the same client at the same concurrency: as many processes,
  as many in flight each;
- pipeline_fsspec and floor_aiobotocore: the same two through the fsspec path
  (`--store_client fsspec`: s3fs) and the client it drives (aiobotocore), so
  the gain of the direct path is measured in the same run;
- naive: `bench.naive`, one blocking `fsspec.open(...).write(...)` per element,
  on a smaller share of the messages (at one request per 20 ms and more, the
  full set would take an hour; its rate does not depend on how many).

Rates are read back from the bucket: objects and their LastModified span.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from bench.backfill import write_inputs
from bench.measure import Run, describe, interleaved, median_run, ratios, run_counted, s3_object_span, target
from devservers import gofakes3, toxiproxy

VARIANTS = ("pipeline", "floor", "pipeline_fsspec", "floor_aiobotocore", "naive")
LATENCY_MS = 20


def commands(inputs: str, naive_inputs: str, bucket: str, options: dict, workers: int,
             in_flight: int) -> dict[str, list[str]]:
    python, destination, options_json = sys.executable, f"s3://{bucket}", json.dumps(options)
    pipeline = [python, "-m", "pipeline.run", "--input", inputs, "--destination", destination,
                "--storage_options", options_json, "--outcomes", f"{inputs}-outcomes-{bucket}",
                "--summary", "false", "--max_in_flight", str(in_flight),
                "--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    floor = [python, "-m", "bench.putloop", inputs, destination, options_json,
             "--processes", str(workers), "--in-flight", str(in_flight)]
    return {
        "pipeline": pipeline + ["--store_client", "direct"],
        "floor": floor + ["--client", "obstore"],
        "pipeline_fsspec": pipeline + ["--store_client", "fsspec"],
        "floor_aiobotocore": floor + ["--client", "aiobotocore"],
        "naive": [python, "-m", "bench.naive", naive_inputs, destination, options_json],
    }


def run(count: int, naive_count: int, work: str, repeat: int, log, workers: int = 2,
        in_flight: int = 64, latency_ms: int = LATENCY_MS) -> dict:
    inputs, naive_inputs = os.path.join(work, "in-b"), os.path.join(work, "in-b-naive")
    count = write_inputs(inputs, count, "sms")
    naive_count = write_inputs(naive_inputs, naive_count, "sms")
    runs: dict[str, list[Run]] = {name: [] for name in VARIANTS}
    with gofakes3.start() as store, toxiproxy.start() as toxi:
        proxy = toxi.create_proxy("s3", upstream=store.endpoint_url.removeprefix("http://"))
        proxy.add_latency(latency_ms)  # every response held back 20 ms
        options = store.storage_options(endpoint_url=f"http://{proxy.listen}")
        client = store.boto3_client()
        try:
            for round_number, name in interleaved(VARIANTS, repeat):
                bucket = store.create_bucket(f"bench-{name.replace('_', '-')}-{round_number}")
                run = run_counted(commands(inputs, naive_inputs, bucket, options, workers, in_flight)[name],
                                  naive_count if name == "naive" else count,
                                  lambda: s3_object_span(client, bucket, "sent_messages/"))
                runs[name].append(run)
                log(describe(f"b round {round_number + 1}/{repeat} {name}", run))
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
            shutil.rmtree(naive_inputs, ignore_errors=True)
            for path in os.listdir(work):
                if path.startswith("in-b-outcomes-"):
                    shutil.rmtree(os.path.join(work, path), ignore_errors=True)
    report = {"scenario": "b", "title": f"S3-compatible store, {latency_ms} ms added to every response",
              "settings": {"messages": count, "naive_messages": naive_count, "repeat": repeat,
                           "workers": workers, "in_flight_per_worker": in_flight, "latency_ms": latency_ms,
                           "store": f"gofakes3 {gofakes3.GOFAKES3_VERSION} behind toxiproxy "
                                    f"{toxiproxy.TOXIPROXY_VERSION}"},
              "mixes": {"sms": {name: median_run(runs[name]) for name in VARIANTS}}}
    result = report["mixes"]["sms"]
    result["ratios"] = ratios(result, (("pipeline", "floor"), ("pipeline", "naive"),
                                       ("pipeline_fsspec", "floor_aiobotocore"), ("pipeline", "pipeline_fsspec")))
    report["targets"] = [
        target("pipeline >= 0.9 x raw PUT loop (steady)", result["ratios"]["pipeline_vs_floor_steady"], 0.9),
        target("pipeline >= 50 x naive (steady)", result["ratios"]["pipeline_vs_naive_steady"], 50),
        target("pipeline >= 50 x naive (end to end)", result["ratios"]["pipeline_vs_naive"], 50),
    ]
    return report
