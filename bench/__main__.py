"""The benchmark suite: every scenario with its comparisons, in one run, on one machine.

    python -m bench                      # a to e at full size (about 40 minutes)
    python -m bench --scenarios b        # one scenario
    python -m bench --smoke              # every scenario at a few seconds' size (CI runs this)
    python -m bench fuzz --count 100000  # hostile records through the whole job, every promise checked
    python -m bench flink                # 10 minutes on the Flink cluster: latency, checkpoint size, a kill

a  backfill to local disk, 100,000 messages per mix (SMS-sized, 12 KB email):
   the pipeline, the single-core floor and the naive pipeline;
b  an S3-compatible store 20 ms away (Toxiproxy): the pipeline, a raw
   concurrent PUT loop and the naive pipeline;
c  streaming: Kafka in, archive (to the store 20 ms away), gate, delivery
   topic, at 1,000 messages per second for 60 s: publish-to-delivery latency
   percentiles, messages lost, memory growth; and first, 15 s at each of a
   few lower rates: how latency grows with load.
d  retrieval: `message-archiver find` for one person in an index of 10
   million messages; `verify` of 100,000 objects 20 ms away beside a raw
   concurrent GET loop; `index rebuild` of the same objects.
e  cost: 100,000 SMS sent at a billion a month, archived to the store 20 ms
   away one object per message and in batched objects, beside the raw PUT
   loop and the prepare-only ceiling: PUT requests and dollars per million
   messages at S3 list prices, and throughput.

Writes <out>/<scenario>.json and .png (throughput bars, latency percentiles)
and prints each target with its verdict. Nothing here is a test: no time is
asserted anywhere. bench/README.md says how each figure is measured.

`fuzz` is not a scenario but a check at scale (bench/fuzz.py): it writes
<out>/fuzz.json and exits 1 on any broken promise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time

from bench.measure import ROOT, machine

SCENARIOS = {"a": "backfill", "b": "store_latency", "c": "streaming", "d": "retrieval", "e": "cost"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["fuzz"]:
        from bench import fuzz

        return fuzz.main(argv[1:])
    if argv[:1] == ["flink"]:
        from bench import flink

        return flink.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated: a, b, c, d, e (default: all)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, one round: checks that every scenario still runs")
    parser.add_argument("--messages", type=int, help="scenario a: messages per mix (default 100000)")
    parser.add_argument("--mixes", default="sms,email", help="scenario a: comma-separated sms, email")
    parser.add_argument("--store-messages", type=int, help="scenario b: messages (default 20000)")
    parser.add_argument("--naive-messages", type=int, help="scenario b: messages for the naive pipeline "
                                                            "(default 500)")
    parser.add_argument("--rate", type=float, help="scenario c: messages per second (default 1000)")
    parser.add_argument("--seconds", type=float, help="scenario c: seconds of load (default 60)")
    parser.add_argument("--sweep", help="scenario c: the other rates, 15 s each, comma-separated, measured in "
                                        "order with --rate (default 200,500,1500; none with --smoke)")
    parser.add_argument("--index-rows", type=int, help="scenario d: rows of the generated index (default "
                                                         "10,000,000)")
    parser.add_argument("--retrieval-objects", type=int, help="scenario d: objects to verify and rebuild "
                                                               "(default 100,000)")
    parser.add_argument("--cost-messages", type=int, help="scenario e: messages (default 100,000)")
    parser.add_argument("--repeat", type=int, help="rounds of scenarios a and b; the median is "
                                                   "reported (default 3)")
    parser.add_argument("--work", default=None,
                        help="folder for inputs and outputs (default: a new one under the system's "
                             "temporary folder, on local disk)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"),
                        help="folder for the JSON reports and plots (default bench/results)")
    args = parser.parse_args(argv)
    smoke = args.smoke
    sizes = {
        "messages": args.messages or (150 if smoke else 100_000),
        "store_messages": args.store_messages or (200 if smoke else 20_000),
        "naive_messages": args.naive_messages or (20 if smoke else 500),
        "rate": args.rate or (100.0 if smoke else 1000.0),
        "seconds": args.seconds or (3.0 if smoke else 60.0),
        "repeat": args.repeat or (1 if smoke else 3),
        "index_rows": args.index_rows or (20_000 if smoke else 10_000_000),
        "retrieval_objects": args.retrieval_objects or (300 if smoke else 100_000),
        "cost_messages": args.cost_messages or (400 if smoke else 100_000),
        "sweep": tuple(float(r) for r in (args.sweep if args.sweep is not None else
                                          "" if smoke else "200,500,1500").split(",") if r.strip()),
    }
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}: choose from {sorted(SCENARIOS)}")
    os.makedirs(args.out, exist_ok=True)

    def log(text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)

    about = {"machine": machine(), "smoke": smoke,
             "measured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-", dir=args.work) as work:
        for scenario in chosen:
            started = time.monotonic()
            report = {**about, **_run(scenario, sizes, work, log, args.mixes)}
            report["seconds"] = round(time.monotonic() - started, 1)
            name = SCENARIOS[scenario]
            with open(os.path.join(args.out, f"{name}.json"), "w") as handle:
                json.dump(report, handle, indent=2)
            from bench import plots

            plots.plot(report, os.path.join(args.out, f"{name}.png"))
            log(f"scenario {scenario} done in {report['seconds']:.0f} s: {args.out}/{name}.json, .png")
            verdicts += [(scenario, t) for t in report["targets"]]
    print(f"{'':2} {'target':58} {'value':>9} {'limit':>7}  verdict")
    for scenario, verdict in verdicts:
        value = "-" if verdict["value"] is None else f"{verdict['value']:,}"
        print(f"{scenario:2} {verdict['target']:58} {value:>9} {verdict['limit']:>7,}  "
              f"{'met' if verdict['met'] else 'NOT met'}")
    return 0


def _run(scenario: str, sizes: dict, work: str, log, mixes: str) -> dict:
    if scenario == "a":
        from bench import backfill

        return backfill.run(sizes["messages"], mixes.split(","), work, sizes["repeat"], log)
    if scenario == "b":
        from bench import store_latency

        return store_latency.run(sizes["store_messages"], sizes["naive_messages"], work, sizes["repeat"], log)
    if scenario == "e":
        from bench import cost

        return cost.run(sizes["cost_messages"], work, log)
    if scenario == "d":
        from bench import retrieval

        return retrieval.run(sizes["index_rows"], sizes["retrieval_objects"], work, log)
    from bench import streaming

    return streaming.run(sizes["rate"], sizes["seconds"], work, log, sweep=sizes["sweep"])


if __name__ == "__main__":
    sys.exit(main())
