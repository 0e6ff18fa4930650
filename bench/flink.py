"""The streaming job on the devservers Flink cluster, over minutes: latency at a
fixed rate, checkpoint size over time, and recovery from a lost TaskManager.

    python -m bench flink                       # 10 minutes: idle, 200/s, idle, 200/s + kill, idle
    python -m bench flink --minutes 3 --rate 100

Kafka (KRaft) in, gofakes3 as the store, and the job exactly as a user starts it
(`python -m pipeline.run --runner FlinkRunner ...`, PROCESS workers,
--parallelism 2, checkpoints every --checkpoint-ms) on a real session cluster
(a JobManager and two TaskManagers). The run is five equal phases: idle, load,
idle, load with one TaskManager SIGKILLed a third of the way in, idle (a new
TaskManager is started once the job has restored). Every message is stamped
with its publish time; a consumer of the job's topics notes when each arrives
on the delivery topic.

Reported: publish-to-delivery latency p50 / p95 / p99 / max in the first load
phase; every completed checkpoint's size and time; messages published,
delivered, lost and delivered twice; and for the kill: seconds until the job
ran again from its checkpoint, and until every message published by then was
delivered. Writes <out>/flink.json. Nothing is asserted here.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time

from bench.loadgen import paced
from bench.measure import ROOT, machine, percentiles
from bench.streaming import PARTITIONS, DeliveryClock, records, start_job
from devservers import flink, gofakes3, kafka


class CheckpointLog(threading.Thread):
    """Every completed checkpoint of the cluster's running job: (seconds, id, bytes)."""

    def __init__(self, cluster, started: float):
        super().__init__(daemon=True)
        self._cluster, self._origin = cluster, started
        self.seen: dict[tuple[str, int], tuple[float, int]] = {}
        self._done = threading.Event()

    def run(self):
        while not self._done.wait(2.0):
            try:
                for job in self._cluster.rest("/jobs/overview")["jobs"]:
                    if job["state"] != "RUNNING":
                        continue
                    stats = self._cluster.rest(f"/jobs/{job['jid']}/checkpoints")
                    for entry in stats.get("history", []):
                        if entry["status"] == "COMPLETED":
                            self.seen.setdefault((job["jid"], entry["id"]), (
                                round(entry["latest_ack_timestamp"] / 1000 - self._origin, 1),
                                entry["state_size"]))
            except OSError:
                pass

    def series(self) -> list[dict]:
        return [{"t": t, "id": cid, "state_size": size}
                for (_, cid), (t, size) in sorted(self.seen.items(), key=lambda kv: kv[1][0])]

    def stop(self):
        self._done.set()
        self.join(10)


def run(minutes: float, rate: float, checkpoint_ms: int, log) -> dict:
    from confluent_kafka import Producer

    phase = minutes * 60 / 5
    with kafka.start() as broker, gofakes3.start() as store, flink.start() as cluster:
        bucket = store.create_bucket("flink-archive")
        job, topics, source = start_job(
            "bench-flink-job", broker, bucket, store.storage_options(),
            *cluster.pipeline_args(parallelism=2), f"--checkpointing_interval={checkpoint_ms}")
        clock = DeliveryClock(broker.bootstrap_servers, topics)
        clock.start()
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 1, "acks": "all"})
        sent = {"load2": 0}
        publish = functools.partial(_publish, producer, source, sent)
        try:
            paced(publish, records(50, "warmup"), 50.0, None, 50)
            producer.flush(30)
            started = time.monotonic()
            while not clock.settled({f"warmup-{i}" for i in range(50)}):
                if not job.running or time.monotonic() - started > 300:
                    raise RuntimeError(f"the job did not deliver its warm-up messages; see {job.log_path}")
                time.sleep(0.2)
            log(f"flink: job ready after {time.monotonic() - started:.1f} s")
            origin = time.time()
            checkpoints = CheckpointLog(cluster, origin)
            checkpoints.start()
            count = int(rate * phase)
            log(f"flink: idle {phase:.0f} s")
            time.sleep(phase)
            log(f"flink: {count:,} messages at {rate:.0f}/s")
            paced(publish, records(count, "load1"), rate, None, count)
            log(f"flink: idle {phase:.0f} s")
            time.sleep(phase)
            log(f"flink: {count:,} messages at {rate:.0f}/s; a TaskManager killed after {phase / 3:.0f} s")
            kill = _Kill(cluster, clock, sent, delay=phase / 3)
            kill.start()
            paced(publish, records(count, "load2"), rate, None, count)
            kill.join()
            log(f"flink: idle {phase:.0f} s")
            time.sleep(phase)
            producer.flush(30)
            checkpoints.stop()
        finally:
            job.stop(timeout=60)
            clock.stop()
            producer.flush(10)
            producer = None
    wanted = {f"{prefix}-{i}" for prefix in ("load1", "load2") for i in range(count)}
    first = [ms for m, (_, ms) in clock.delivered.items() if m.startswith("load1-")]
    series = checkpoints.series()
    sizes = [c["state_size"] for c in series]
    return {
        "scenario": "flink", "title": "Streaming on a Flink session cluster (2 TaskManagers, PROCESS workers)",
        "settings": {"minutes": minutes, "rate": rate, "checkpoint_ms": checkpoint_ms, "partitions": PARTITIONS,
                     "parallelism": 2, "store": f"gofakes3 {gofakes3.GOFAKES3_VERSION} on loopback"},
        "latency_ms": percentiles(first),
        "published": len(wanted), "delivered": len(wanted & clock.delivered.keys()),
        "lost": len(wanted - clock.delivered.keys() - clock.held), "duplicates": clock.duplicates,
        "checkpoints": {"count": len(series), "first_bytes": sizes[0] if sizes else None,
                        "last_bytes": sizes[-1] if sizes else None,
                        "min_bytes": min(sizes, default=None), "max_bytes": max(sizes, default=None),
                        "series": series},
        "kill": kill.figures(),
        "machine": machine(),
    }


def _publish(producer, topic: str, sent: dict, data: bytes) -> None:
    producer.produce(topic, data)
    producer.poll(0)
    if b'"load2-' in data:
        sent["load2"] += 1


class _Kill(threading.Thread):
    """After `delay`, SIGKILL TaskManager 1; time the restore and the catch-up."""

    def __init__(self, cluster, clock: DeliveryClock, sent: dict, delay: float):
        super().__init__(daemon=True)
        self._cluster, self._clock, self._sent, self._delay = cluster, clock, sent, delay
        self._figures: dict = {}

    def run(self):
        time.sleep(self._delay)
        [jid] = [j["jid"] for j in self._cluster.rest("/jobs/overview")["jobs"] if j["state"] == "RUNNING"]
        killed = time.monotonic()
        self._cluster.kill_task_manager(1)
        restarted = running = None
        while time.monotonic() - killed < 300 and running is None:
            job = self._cluster.rest(f"/jobs/{jid}")
            if job["state"] != "RUNNING":
                restarted = restarted or time.monotonic()
            elif restarted and set(k for k, v in job["status-counts"].items() if v) == {"RUNNING"}:
                running = time.monotonic()
            time.sleep(0.2)
        # caught up: every message published until the job ran again has been delivered
        owed = {f"load2-{i}" for i in range(self._sent["load2"])}
        while time.monotonic() - killed < 300 and not self._clock.settled(owed):
            time.sleep(0.2)
        caught_up = time.monotonic() if self._clock.settled(owed) else None
        self._cluster.add_task_manager()
        self._figures = {"noticed_s": _since(killed, restarted), "restored_s": _since(killed, running),
                         "caught_up_s": _since(killed, caught_up), "owed_at_restore": len(owed)}

    def figures(self) -> dict:
        return self._figures


def _since(start: float, end: float | None) -> float | None:
    return None if end is None else round(end - start, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench flink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    parser.add_argument("--rate", type=float, default=200.0, help="messages per second under load (default 200)")
    parser.add_argument("--checkpoint-ms", type=int, default=10_000, help="checkpoint interval (default 10000)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results"), help="where flink.json goes")
    args = parser.parse_args(argv)
    report = run(args.minutes, args.rate, args.checkpoint_ms, lambda line: print(line, flush=True))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "flink.json"), "w") as handle:
        json.dump(report, handle, indent=2)
    c = report["checkpoints"]
    print(f"flink: p50 {report['latency_ms']['p50']} ms, p99 {report['latency_ms']['p99']} ms at "
          f"{args.rate:.0f}/s; {report['delivered']:,} of {report['published']:,} delivered, {report['lost']} lost, "
          f"{report['duplicates']} twice; {c['count']} checkpoints, {c['min_bytes']}..{c['max_bytes']} bytes "
          f"(first {c['first_bytes']}, last {c['last_bytes']}); kill: {report['kill']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
