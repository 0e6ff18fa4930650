"""gofakes3: a small, fast S3-compatible server in Go, keeping objects in memory.

The benchmarks' object store. moto (`devservers.s3`) is the conformance
emulator: credentials, Object Lock, versions. But it is a single Python
process that spends about 2 ms of CPU on every PutObject, so on a 2-core
machine it, not the archiver, would set every benchmark's pace. gofakes3
spends well under a tenth of that, leaving the cores to what is measured.

What gofakes3 v1.2.0 does: PutObject with Content-Type, user metadata and the
x-amz-checksum-sha256 header (stored and echoed back, not verified), Get,
Head, ListObjectsV2 with millisecond LastModified. No credentials are
checked: any key and secret are accepted.

    with gofakes3.start() as s3:
        s3.create_bucket("archive")
        ... storage_options=s3.storage_options() ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservers._process import (
    CACHE_ROOT, HOST, RunningServer, ServerProcess, go_install, http_probe, launch)

GOFAKES3_VERSION = "v1.2.0"
_PACKAGE = "github.com/johannesboyne/gofakes3/cmd/gofakes3"
BINARY = CACHE_ROOT / "bin" / "gofakes3"
REGION = "us-east-1"


@dataclass
class FastS3Server(RunningServer):
    endpoint_url: str
    process: ServerProcess = field(repr=False)
    access_key: str = "bench"
    secret_key: str = "bench-secret"

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """s3fs options; `endpoint_url` overrides the server's (a proxy in front of it)."""
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": endpoint_url or self.endpoint_url, "region_name": REGION},
                "config_kwargs": {"s3": {"addressing_style": "path"}}}

    def boto3_client(self, endpoint_url: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=endpoint_url or self.endpoint_url, region_name=REGION,
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        self.boto3_client().create_bucket(Bucket=name)
        return name


def install(version: str = GOFAKES3_VERSION) -> Path:
    """`go install` gofakes3 once; return the binary's path."""
    go_install("gofakes3", _PACKAGE, version, BINARY)
    return BINARY


def start(timeout: float = 30.0) -> FastS3Server:
    """Install if needed, then serve S3 from memory on a free 127.0.0.1 port."""
    binary = install()
    process, port = launch(
        "gofakes3", lambda p: [str(binary), "-backend", "memory", "-host", f"{HOST}:{p}", "-quiet"],
        probe_for_port=lambda p: http_probe(HOST, p, "/"), timeout=timeout)
    return FastS3Server(endpoint_url=f"http://{HOST}:{port}", process=process)
