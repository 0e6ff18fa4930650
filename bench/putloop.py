"""The floor of scenario b: a raw concurrent PUT loop, nothing but the requests.

    python -m bench.putloop INPUT_FOLDER s3://BUCKET STORAGE_OPTIONS_JSON [--processes 2] [--in-flight 64]
                            [--client obstore|aiobotocore]

Each process first prepares its share of the messages (every `processes`-th
line, untimed), then PUTs them at `in-flight` requests at once, with the
client the pipeline uses: obstore (the default; the store's direct path, built
by `archive.direct` from the same options, so the same PUT: key, bytes,
Content-Type, metadata, checksum, If-None-Match, no client retries) or
aiobotocore (the client s3fs drives, for the fsspec path). A transient
failure (throttling, 5xx, a timeout, a dropped connection) is retried with the
pipeline's own RetryPolicy, as the pipeline would, and a retried PUT that finds
its object already there counts as written; anything else fails the loop. Its
rate is the store's and the client's ceiling at that concurrency. It prints
one line, `BENCH {"put_seconds": ..., "put_retries": ...}`: the longest
process's PUT phase and the retries of all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import sys
import time

from archive.archiver import Archiver
from archive.backends import S3Backend
from archive.errors import TRANSIENT, classify
from archive.retry import RetryPolicy
from archive.tenants import Destination
from bench.measure import in_processes


async def with_retries(put, retries: list, policy: RetryPolicy = RetryPolicy()) -> None:
    """`await put()`, retried on transient errors as the pipeline's store does;
    a retry that finds the object there means the first attempt landed."""
    attempt = 0
    while True:
        try:
            return await put()
        except FileExistsError:
            if not attempt:
                raise
            return None
        except Exception as exc:  # noqa: BLE001 - classified, then retried or raised
            error_class = classify(exc)
            if error_class not in TRANSIENT or not policy.should_retry(error_class, attempt):
                raise
            attempt += 1
            retries.append(error_class.value)
            await asyncio.sleep(policy.backoff(attempt))


def prepared(source: str, share: int, shares: int) -> list:
    archiver, requests, index = Archiver(), [], 0
    for name in sorted(os.listdir(source)):
        with gzip.open(os.path.join(source, name), "rb") as lines:
            for line in lines:
                if index % shares == share:
                    requests.append(archiver.prepare(line.rstrip(b"\n")))
                index += 1
    return requests


async def put_all(requests: list, bucket: str, storage_options: dict, in_flight: int,
                  retries: list) -> float:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    client_kwargs = storage_options.get("client_kwargs", {})
    config = AioConfig(**{"retries": {"total_max_attempts": 1}, "max_pool_connections": in_flight,
                          **storage_options.get("config_kwargs", {})})
    backend = S3Backend(Destination(f"s3://{bucket}", storage_options))
    async with get_session().create_client(
            "s3", aws_access_key_id=storage_options.get("key"),
            aws_secret_access_key=storage_options.get("secret"), config=config, **client_kwargs) as client:
        queue = iter(requests)

        async def worker():
            for request in queue:
                await with_retries(lambda: client.put_object(
                    Bucket=bucket, Key=request.key, Body=request.data, IfNoneMatch="*",
                    **backend.put_object_args(request.metadata)), retries)
        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.monotonic() - started


async def put_all_obstore(requests: list, bucket: str, storage_options: dict, in_flight: int,
                          retries: list) -> float:
    from archive import direct

    backend = direct.plan(Destination(f"s3://{bucket}", storage_options), "direct").open()
    queue = iter(requests)

    async def worker():
        for request in queue:
            await with_retries(lambda: backend.put(request.key, request.data, request.metadata,
                                                   create_only=True), retries)
    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.monotonic() - started


def _one_process(args, share: int) -> tuple[float, int]:
    requests, retries = prepared(args.source, share, args.processes), []
    bucket = args.destination.removeprefix("s3://").strip("/")
    put = put_all_obstore if args.client == "obstore" else put_all
    seconds = asyncio.run(put(requests, bucket, json.loads(args.storage_options), args.in_flight, retries))
    return seconds, len(retries)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.putloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="folder of gzipped JSON Lines files")
    parser.add_argument("destination", help="s3://bucket")
    parser.add_argument("storage_options", help="s3fs storage options (JSON): key, secret, client_kwargs")
    parser.add_argument("--processes", type=int, default=2, help="processes, each with its share (default 2)")
    parser.add_argument("--in-flight", type=int, default=64, help="requests in flight per process (default 64)")
    parser.add_argument("--client", choices=("obstore", "aiobotocore"), default="obstore",
                        help="the S3 client (default obstore, the pipeline's direct path)")
    args = parser.parse_args(argv)
    shares = in_processes(_one_process, [(args, share) for share in range(args.processes)])
    print("BENCH " + json.dumps({"put_seconds": round(max(seconds for seconds, _ in shares), 3),
                                 "put_retries": sum(retries for _, retries in shares)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
