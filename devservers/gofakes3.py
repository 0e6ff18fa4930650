"""gofakes3: a small, fast S3-compatible server in Go, keeping objects in memory.

The benchmarks' object store. moto (`devservers.s3`) is the conformance
emulator: credentials, Object Lock, versions. But it is a single Python
process that spends about 2 ms of CPU on every PutObject, so on a 2-core
machine it, not the archiver, would set every benchmark's pace. gofakes3
spends well under a tenth of that, leaving the cores to what is measured.

What gofakes3 v1.2.0 does: PutObject with Content-Type, user metadata and the
x-amz-checksum-sha256 header (stored and echoed back, not verified), Get,
Head, ListObjectsV2 with millisecond LastModified. No credentials are
checked: any key and secret are accepted. On 127.0.0.1 botocore addresses
buckets in the path, which is what gofakes3 serves.

    with gofakes3.start() as s3:
        s3.create_bucket("archive")
        ... storage_options=s3.storage_options() ...
"""

from __future__ import annotations

from pathlib import Path

from devservers._process import CACHE_ROOT, HOST, go_install, http_probe, launch
from devservers.s3 import DEFAULT_REGION, S3Server

GOFAKES3_VERSION = "v1.2.0"
_PACKAGE = "github.com/johannesboyne/gofakes3/cmd/gofakes3"
BINARY = CACHE_ROOT / "bin" / "gofakes3"


def install(version: str = GOFAKES3_VERSION) -> Path:
    """`go install` gofakes3 once; return the binary's path."""
    go_install("gofakes3", _PACKAGE, version, BINARY)
    return BINARY


def start(timeout: float = 30.0) -> S3Server:
    """Install if needed, then serve S3 from memory on a free 127.0.0.1 port. The
    server is spoken to like moto's (`devservers.s3.S3Server`): the same clients
    and options; only moto's own reset API is missing."""
    binary = install()
    process, port = launch(
        "gofakes3", lambda p: [str(binary), "-backend", "memory", "-host", f"{HOST}:{p}", "-quiet"],
        probe_for_port=lambda p: http_probe(HOST, p, "/"), timeout=timeout)
    return S3Server(endpoint_url=f"http://{HOST}:{port}", region=DEFAULT_REGION, access_key="bench",
                    secret_key="bench-secret", process=process)
