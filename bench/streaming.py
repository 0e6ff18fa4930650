"""Scenario c: streaming. Kafka in, archive, gate, delivery topic, at a fixed offered rate.

A real Kafka broker (KRaft), the store 20 ms away (gofakes3 behind
Toxiproxy, as in scenario b), and the streaming job exactly as a user starts
it (`python -m pipeline.run --kafka_topic ...`). Once warm-up
messages have come through, messages of every channel are published at an
offered rate, each stamped with its publish time (`sent_at`, ms). A consumer
of the job's topics notes when each message arrives on the delivery topic and
when its outcome says its object was written.

Three systems are measured in the same run, one after the other, each on its
own topics and bucket: the pipeline on the local Flink mini-cluster
(`--local_runner flink`, the faster local runner here), the same pipeline on
Prism (`--local_runner prism`, the default), and the floor (bench.streamfloor:
a hand-written consumer that prepares, PUTs with the same obstore client at the
same concurrency, and produces the delivery record). Each serves every phase:
the sweep's rates and the main rate, lowest first (how latency grows with
load). Each phase drains before the next: it waits while messages are still
arriving, and what never arrives is counted lost. A rate is sustained when it
was offered as asked, nothing was lost, and latency stayed bounded over the
whole phase (see `sustained`); the highest such rate is each system's
`max_sustained_rate`.

Reported per phase and system: latency p50 / p95 / p99 / max, messages
published, delivered, held (failed to archive), lost, and the CPU of the
system's whole process tree (the launcher, its runner (Prism, or the job
server's JVM with the Flink mini-cluster) and its SDK harness processes; or the
floor's one process) per message. For the pipeline's main run also: the
split into publish -> object written and written -> delivered, duplicates,
and the resident memory of its process tree every second.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import sys
import threading
import time

from archive.sample import generate
from bench.loadgen import paced
from bench.measure import ROOT, ProcessTreeSampler, percentiles, target, tree_cpu_seconds
from devservers import gofakes3, kafka, toxiproxy
from devservers._process import ServerProcess

LATENCY_MS = 20
PARTITIONS = 4
WARMUP = 200              # published at WARMUP_RATE before anything is measured
WARMUP_RATE = 100.0
IN_FLIGHT = 256          # object writes in flight, the pipeline's and the floor's
DRAIN_QUIET_SECONDS = 20.0   # a phase is over when nothing has arrived for this long
DRAIN_MAX_SECONDS = 300.0


def records(count: int, prefix: str) -> list[bytes]:
    """`count` valid messages of every channel, with unique message ids (`paced`
    stamps each with its publish time as it goes)."""
    out = []
    for index, data in enumerate(generate(count, "clevertap", seed=5, bad_ratio=0.0)):
        record = json.loads(data)
        record.pop("dispatch_id", None)
        record["message_id"] = f"{prefix}-{index}"
        out.append(json.dumps(record).encode())
    return out


class DeliveryClock(threading.Thread):
    """Reads the job's output topics from the start: when each message arrives on the
    delivery (or failure) topic, and when its outcome says its object was written."""

    def __init__(self, bootstrap_servers: str, topics: dict[str, str]):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        self._consumer = Consumer({"bootstrap.servers": bootstrap_servers, "group.id": "bench-clock",
                                   "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                   "fetch.wait.max.ms": 10,
                                   # a topic created a moment ago: look again each second, not in 5 min
                                   "topic.metadata.refresh.interval.ms": 1000})
        self._consumer.subscribe(list(topics.values()))
        self._names = {topic: name for name, topic in topics.items()}
        self.delivered: dict[str, tuple[int, float]] = {}  # message id -> (sent_at, latency ms), first arrival
        self.archived_at: dict[str, float] = {}  # message id -> when its outcome says the write ended (ms)
        self.held: set[str] = set()
        self.duplicates = 0
        self.last_arrival = time.monotonic()
        self._done = threading.Event()

    def run(self):
        while not self._done.is_set():
            message = self._consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            arrived_ms = time.time() * 1000
            self.last_arrival = time.monotonic()
            record = json.loads(message.value())
            message_id, kind = record["message_id"], self._names[message.topic()]
            if kind == "outcomes":
                if record.get("at"):
                    self.archived_at.setdefault(message_id, _epoch_ms(record["at"]))
            elif kind == "failures":
                self.held.add(message_id)
            elif message_id in self.delivered:
                self.duplicates += 1
            else:
                self.delivered[message_id] = (record["sent_at"], arrived_ms - record["sent_at"])

    def settled(self, wanted: set[str]) -> bool:
        return wanted <= self.delivered.keys() | self.held

    def stop(self):
        self._done.set()
        self.join(10)
        self._consumer.close()


def _topics(broker, system: str) -> tuple[dict[str, str], str]:
    outputs = {output: broker.create_topic(f"bench-{system}-{output}", partitions=1)
               for output in ("deliveries", "failures", "outcomes")}
    return outputs, broker.create_topic(f"bench-{system}-outbound", partitions=PARTITIONS)


def start_job(name: str, broker, bucket: str, storage_options: dict, *extra: str, system: str = "pipeline"):
    """The source and output topics, and the streaming job on them as a user starts it:
    (the job's process, the output topics by name, the source topic)."""
    topics, source = _topics(broker, system)
    job = ServerProcess(name, [
        sys.executable, "-m", "pipeline.run", "--kafka_topic", source,
        "--kafka_bootstrap_servers", broker.bootstrap_servers, "--kafka_group", "bench-archiver",
        "--destination", f"s3://{bucket}", "--storage_options", json.dumps(storage_options),
        "--max_in_flight", str(IN_FLIGHT),
        *[f"--{output}=kafka://{topic}" for output, topic in topics.items()], *extra], cwd=ROOT)
    return job, topics, source


def start_floor(name: str, broker, bucket: str, storage_options: dict):
    """bench.streamfloor on its own topics: (its process, the output topics by name, the source)."""
    topics, source = _topics(broker, "floor")
    del topics["outcomes"]  # the floor writes no outcomes
    job = ServerProcess(name, [
        sys.executable, "-m", "bench.streamfloor", "--bootstrap", broker.bootstrap_servers, "--topic", source,
        "--group", "bench-floor", "--deliveries", topics["deliveries"], "--failures", topics["failures"],
        "--destination", f"s3://{bucket}", "--storage_options", json.dumps(storage_options),
        "--in-flight", str(IN_FLIGHT)], cwd=ROOT)
    return job, topics, source


def run(rate: float, seconds: float, work: str, log, latency_ms: int = LATENCY_MS,
        sweep: tuple[float, ...] = (), sweep_seconds: float = 15.0, floor: bool = True) -> dict:
    """Each system (the pipeline, then the floor) on its own topics and bucket, at every
    rate of `sweep` (for `sweep_seconds`) and `rate` (for `seconds`), lowest first."""
    with kafka.start() as broker, gofakes3.start() as store, toxiproxy.start() as toxi:
        proxy = toxi.create_proxy("s3", upstream=store.endpoint_url.removeprefix("http://"))
        proxy.add_latency(latency_ms)
        options = store.storage_options(f"http://{proxy.listen}")
        systems = {"pipeline": _pipeline("pipeline", "flink"), "prism": _pipeline("prism", "prism")}
        if floor:
            systems["floor"] = start_floor
        results = {name: _system(name, starter, broker, store, options, rate, seconds, sweep, sweep_seconds, log)
                   for name, starter in systems.items()}
    pipeline = results["pipeline"]
    main = pipeline["main"]
    report = {
        "scenario": "c", "title": f"Streaming: Kafka in, archive ({latency_ms} ms store), gate, delivery topic",
        "settings": {"rate": rate, "seconds": seconds, "sweep": list(sweep), "sweep_seconds": sweep_seconds,
                     "partitions": PARTITIONS, "latency_ms": latency_ms, "in_flight": IN_FLIGHT,
                     "runner": "Flink 1.19 mini-cluster in Beam's job server (--local_runner flink: "
                               "PROCESS workers, one per core, 20 ms bundles)",
                     "prism": "the same job on Prism (--local_runner prism, the default)",
                     "floor": "bench.streamfloor: one asyncio process, confluent-kafka, obstore "
                              f"(the pipeline's direct client), {IN_FLIGHT} in flight",
                     "store": f"gofakes3 {gofakes3.GOFAKES3_VERSION} behind toxiproxy "
                              f"{toxiproxy.TOXIPROXY_VERSION}"},
        "warmup_seconds": pipeline["warmup_seconds"], **main,
        "sweep": pipeline["sweep"], "max_sustained_rate": pipeline["max_sustained_rate"]}
    report["targets"] = [
        target("p99 publish-to-delivery latency (ms) <= 250", main["latency_ms"]["p99"], 250, at_least=False),
        target("messages lost == 0", main["lost"], 0, at_least=False),
        target("RSS growth after the first 10 s (MB) < 50", main["rss_growth_after_10s_mb"], 50, at_least=False),
    ]
    prism = results["prism"]
    report["prism"] = {**prism["main"], "warmup_seconds": prism["warmup_seconds"], "sweep": prism["sweep"]}
    report["prism_max_sustained_rate"] = prism["max_sustained_rate"]
    if "floor" in results:
        theirs = results["floor"]
        report["floor"] = {**theirs["main"], "warmup_seconds": theirs["warmup_seconds"], "sweep": theirs["sweep"]}
        report["floor_max_sustained_rate"] = theirs["max_sustained_rate"]
        report["targets"] += [
            target("highest sustained rate >= 0.5 x the floor's",
                   ratio(pipeline["max_sustained_rate"], theirs["max_sustained_rate"]), 0.5),
            target("CPU per message <= 2 x the floor's (at the main rate)",
                   ratio(main["cpu_ms_per_message"], theirs["main"]["cpu_ms_per_message"]), 2, at_least=False),
        ]
    return report


def _pipeline(system: str, runner: str):
    def start(name, broker, bucket, storage_options):
        return start_job(name, broker, bucket, storage_options, "--local_runner", runner, system=system)
    return start


def _system(name: str, starter, broker, store, options: dict, rate: float, seconds: float, sweep, sweep_seconds,
            log) -> dict:
    """One system through the warm-up and every phase."""
    from confluent_kafka import Producer

    bucket = store.create_bucket(f"stream-{name}")
    job, topics, source = starter(f"bench-streaming-{name}", broker, bucket, options)
    clock = DeliveryClock(broker.bootstrap_servers, topics)
    clock.start()
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 1, "acks": "all"})
    try:
        started = time.monotonic()
        # Warm up at a low rate: connections, each region's phone metadata, Prism's stages.
        paced(functools.partial(producer.produce, source), records(WARMUP, "warmup"), WARMUP_RATE, None, WARMUP)
        producer.flush(30)
        while not clock.settled({f"warmup-{i}" for i in range(WARMUP)}):
            if not job.running or time.monotonic() - started > 240:
                raise RuntimeError(f"{name} did not deliver its warm-up messages "
                                   f"(exit {job.returncode}); see {job.log_path}")
            time.sleep(0.2)
        warmup_seconds = time.monotonic() - started
        log(f"c: {name} ready after {warmup_seconds:.1f} s")
        phases = sorted([(offered, sweep_seconds, False) for offered in sweep] + [(rate, seconds, True)])
        measured = [(is_main, _phase(producer, source, clock, job, f"{name}{index}", offered, length, log,
                                     sample_memory=is_main, label=name))
                    for index, (offered, length, is_main) in enumerate(phases)]
    finally:
        job.stop(timeout=20)
        clock.stop()
        producer.flush(10)
        producer = None  # gone before the broker is: it would keep reconnecting
    summary = [{key: phase[key] for key in SWEEP_KEYS} for _, phase in measured]
    return {"warmup_seconds": round(warmup_seconds, 1), "sweep": summary,
            "main": next(phase for is_main, phase in measured if is_main),
            "max_sustained_rate": max((p["asked_rate"] for p in summary if p["sustained"]), default=0)}


SWEEP_KEYS = ("asked_rate", "offered_rate", "published", "delivered", "lost", "latency_ms", "cpu_ms_per_message",
              "sustained", "seconds")


def sustained(result: dict, asked: float) -> bool:
    """The rate was held: offered as asked, every message delivered or held, and latency
    bounded over the whole run (the last quarter's p99 within twice the first's plus a
    second: a backlog that grows makes the latency grow with it)."""
    seconds = result["latency_by_second"]
    if result["lost"] or result["offered_rate"] < 0.95 * asked or len(seconds) < 4:
        return False
    quarter = max(1, len(seconds) // 4)
    first = max(s["p99"] for s in seconds[:quarter])
    last = max(s["p99"] for s in seconds[-quarter:])
    return last <= 2 * first + 1000


def ratio(one, other):
    return round(one / other, 2) if one and other else None


def _phase(producer, source: str, clock: DeliveryClock, job: ServerProcess, prefix: str, rate: float,
           seconds: float, log, sample_memory: bool = False, label: str = "") -> dict:
    """Publish at `rate` for `seconds`, wait for the stream to drain, and measure."""
    total = int(rate * seconds)
    load = records(total, prefix)
    log(f"c: {label}: publishing {total:,} messages at {rate:,.0f}/s ({prefix})")
    cpu_before = tree_cpu_seconds(job.pid)

    def publish(data: bytes) -> None:
        producer.produce(source, data)
        producer.poll(0)

    with ProcessTreeSampler(job.pid, interval=1.0) if sample_memory else contextlib.nullcontext() as memory:
        published, publish_seconds = paced(publish, load, rate, None, total)
        producer.flush(30)
        wanted = {f"{prefix}-{i}" for i in range(published)}
        drain_started = time.monotonic()
        while not clock.settled(wanted) and job.running:
            quiet = time.monotonic() - max(clock.last_arrival, drain_started)
            if quiet > DRAIN_QUIET_SECONDS or time.monotonic() - drain_started > DRAIN_MAX_SECONDS:
                break
            time.sleep(0.2)
        drain_seconds = time.monotonic() - drain_started
        cpu_seconds = tree_cpu_seconds(job.pid) - cpu_before
    timed = {m: sent_and_ms for m, sent_and_ms in clock.delivered.items() if m in wanted}
    delivered, held = set(timed), clock.held & wanted
    result = {
        "asked_rate": rate, "seconds": seconds,
        "published": published, "publish_seconds": round(publish_seconds, 2),
        "offered_rate": round(published / max(publish_seconds, 1e-9), 1),
        "delivered": len(delivered), "held": len(held), "lost": len(wanted - delivered - held),
        "duplicates": clock.duplicates, "drain_seconds": round(drain_seconds, 2),
        "latency_ms": percentiles([ms for _, ms in timed.values()]),
        # where the time goes: publish -> object written (read, archive), written -> delivered (gate, publish)
        "archived_ms": percentiles([clock.archived_at[m] - sent for m, (sent, _) in timed.items()
                                    if m in clock.archived_at]),
        "archived_to_delivered_ms": percentiles([sent + ms - clock.archived_at[m] for m, (sent, ms) in timed.items()
                                                 if m in clock.archived_at]),
        "latency_by_second": _latency_by_second(list(timed.values())),
        # the job's whole process tree (launcher, SDK harness, Prism; or the floor), over publish and drain
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_ms_per_message": round(cpu_seconds * 1000 / published, 3) if published else None,
    }
    result["sustained"] = sustained(result, rate)
    if memory:
        series = [(round(t, 1), round(rss / 2 ** 20, 1)) for t, rss in memory.series]
        result.update(rss_mb=series, rss_growth_after_10s_mb=_growth(series, 10.0, publish_seconds),
                      peak_rss_mb=round(memory.peak / 2 ** 20, 1))
    log(f"c: {label} {prefix}: offered {result['offered_rate']:,.0f}/s, p50 {result['latency_ms']['p50']} ms, "
        f"p99 {result['latency_ms']['p99']} ms, lost {result['lost']}, {result['cpu_ms_per_message']} ms CPU "
        f"per message, {'sustained' if result['sustained'] else 'not sustained'}")
    return result


def _epoch_ms(iso: str) -> float:
    return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def _growth(series: list[tuple[float, float]], after: float, until: float) -> float | None:
    """RSS at the end of the load minus RSS `after` seconds into it, in MB."""
    window = [rss for t, rss in series if after <= t <= until]
    return round(window[-1] - window[0], 1) if len(window) > 1 else None


def _latency_by_second(timed: list[tuple[int, float]]) -> list[dict]:
    """p50 and p99 latency of the messages published in each second of the load."""
    if not timed:
        return []
    first = min(sent for sent, _ in timed)
    buckets: dict[int, list[float]] = {}
    for sent, ms in timed:
        buckets.setdefault(int((sent - first) // 1000), []).append(ms)
    return [{"second": second, "messages": len(values),
             **{k: v for k, v in percentiles(values).items() if k in ("p50", "p99")}}
            for second, values in sorted(buckets.items())]
