"""GCS: fake-gcs-server, built once from the Go module proxy with the machine's Go.

What fake-gcs-server v1.56.1 does (checked by hand and in tests/test_devservers.py):

- Credentials. None are checked: clients use anonymous credentials (gcsfs
  `token="anon"`, `AnonymousCredentials`) and anything is allowed.
- Encryption. A bucket's `default_kms_key_name` and an object's `kms_key_name` are
  dropped (read back as None); a customer-supplied key (CSEK) upload is accepted and the
  object reads back *without* the key. Nothing is encrypted.
- Retention. Bucket retention policies and temporary holds are dropped too: a "held"
  object can be deleted. No WORM emulation.
- Metadata. Custom metadata, Content-Type and Content-Encoding round-trip;
  `if_generation_match=0` on an existing object gets 412 conditionNotMet.
- Uploads. Multipart and resumable uploads work; resumable session URLs point at
  `-external-url` (the server itself), so a FaultProxy in front sees the first request
  of a resumable upload but not its chunks.

gcsfs >= 2026.x (ExtendedGcsFileSystem, on when GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT is
unset or true at *its import*) asks every bucket's storage layout over gRPC+TLS, which
this HTTP emulator cannot answer: each lookup retries for up to 60 s and is not cached.
Importing this module first sets GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false (if unset);
if gcsfs was imported before with the extended class, `storage_options()` warns and
adds a short `retry_timeout` so that each lookup costs well under a second instead.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

from devservers._process import (
    CACHE_ROOT, HOST, RunningServer, ServerProcess, go_install, http_probe, launch)

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

FAKE_GCS_VERSION = "v1.56.1"
MODULE = "github.com/fsouza/fake-gcs-server"
BINARY = CACHE_ROOT / "bin" / "fake-gcs-server"
PROJECT = "test"


@dataclass
class GCSServer(RunningServer):
    endpoint_url: str
    process: ServerProcess = field(repr=False)
    project: str = PROJECT

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """gcsfs options; `endpoint_url` overrides the server's (a FaultProxy's URL)."""
        options: dict[str, Any] = {"endpoint_url": endpoint_url or self.endpoint_url,
                                   "token": "anon", "project": self.project}
        if _gcsfs_asks_grpc():
            warnings.warn(
                "gcsfs was imported with GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT on: each bucket "
                "lookup tries gRPC against fake-gcs-server and fails; set it to false "
                "before gcsfs is imported", RuntimeWarning, stacklevel=2)
            options["retry_timeout"] = 0.2
        return options

    def client(self, endpoint_url: str | None = None):
        """A google.cloud.storage.Client with anonymous credentials on this server."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": endpoint_url or self.endpoint_url})

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return name


def _gcsfs_asks_grpc() -> bool:
    gcsfs = sys.modules.get("gcsfs")
    return gcsfs is not None and gcsfs.GCSFileSystem.__name__ == "ExtendedGcsFileSystem"


def install(version: str = FAKE_GCS_VERSION) -> str:
    """`go install` fake-gcs-server into the cache, unless that version is already there."""
    if not go_install("fake-gcs-server", MODULE, version, BINARY):
        return f"fake-gcs-server {version} already in {BINARY}"
    return f"fake-gcs-server {version} built into {BINARY}"


def start(*, timeout: float = 30.0, log_level: str = "info") -> GCSServer:
    """Start fake-gcs-server (in memory) on a free 127.0.0.1 port, building it if needed."""
    install()

    def argv(port: int) -> list[str]:
        url = f"http://{HOST}:{port}"
        return [str(BINARY), "-scheme", "http", "-host", HOST, "-port", str(port),
                "-backend", "memory", "-external-url", url, "-public-host", f"{HOST}:{port}",
                "-log-level", log_level]

    proc, port = launch("fake-gcs-server", argv,
                        probe_for_port=lambda p: http_probe(HOST, p, "/storage/v1/b"),
                        timeout=timeout)
    return GCSServer(endpoint_url=f"http://{HOST}:{port}", process=proc)
