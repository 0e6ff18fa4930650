"""Azure Blob: Azurite's blob service, installed once from npm, run with the machine's node.

What Azurite 3.37.0 does (checked by hand and in tests/test_devservers.py):

- Credentials. SharedKey signatures are checked: a wrong account key gets 403
  AuthorizationFailure. Only the well-known dev account (`devstoreaccount1`) exists.
- Encryption. Customer-provided keys (CPK) are refused by the Python SDK itself over
  plain HTTP ("must be used over HTTPS"); an `encryption_scope` on upload is accepted
  and ignored (the blob's properties show none). Nothing is encrypted.
- Immutability. Blob immutability policies and legal holds answer "Current API is not
  implemented yet" (an error status): no WORM emulation.
- Metadata. `x-ms-meta-*`, Content-Type and Content-Encoding round-trip;
  `overwrite=False` on an existing blob gets 409 BlobAlreadyExists.
- Node. The package declares node >= 22 (npm warns EBADENGINE on node 20) but the
  blob service runs on node 20. It starts in 2-8 s on this 2-core machine, most of it
  node loading Azurite's modules. Data are kept in memory (`--inMemoryPersistence`)
  unless `start(location=...)` names a folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devservers._process import (
    CACHE_ROOT, HOST, DevServerError, RunningServer, ServerProcess, http_probe,
    install_lock, launch, run_logged)

AZURITE_VERSION = "3.37.0"
INSTALL_DIR = CACHE_ROOT / "azurite"
ACCOUNT_NAME = "devstoreaccount1"
# The well-known development key, the same in every Azurite (not a secret).
ACCOUNT_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
_MAIN = INSTALL_DIR / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
_PACKAGE_JSON = INSTALL_DIR / "node_modules" / "azurite" / "package.json"


def connection_string(blob_endpoint: str) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={blob_endpoint};")


@dataclass
class AzuriteServer(RunningServer):
    blob_endpoint: str
    process: ServerProcess = field(repr=False)
    account_name: str = ACCOUNT_NAME
    account_key: str = field(default=ACCOUNT_KEY, repr=False)
    workdir: Path | None = field(default=None, repr=False)

    def stop(self) -> None:
        super().stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_endpoint)

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """adlfs options; `endpoint_url` (e.g. a FaultProxy's URL) replaces host and port."""
        endpoint = self.blob_endpoint
        if endpoint_url is not None:
            endpoint = f"{endpoint_url.rstrip('/')}/{ACCOUNT_NAME}"
        return {"connection_string": connection_string(endpoint)}

    def blob_service_client(self, endpoint_url: str | None = None, **kwargs: Any):
        from azure.storage.blob import BlobServiceClient

        conn = self.storage_options(endpoint_url)["connection_string"]
        return BlobServiceClient.from_connection_string(conn, **kwargs)

    def create_container(self, name: str) -> str:
        self.blob_service_client().create_container(name)
        return name


def installed_version() -> str | None:
    try:
        return json.loads(_PACKAGE_JSON.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def install(version: str = AZURITE_VERSION) -> str:
    """npm install azurite into the cache, unless that version is already there."""
    with install_lock("azurite"):
        if installed_version() == version and _MAIN.exists():
            return f"azurite {version} already in {INSTALL_DIR}"
        npm = shutil.which("npm")
        if npm is None:
            raise DevServerError("azurite: npm is not on PATH (Node.js is needed)")
        INSTALL_DIR.mkdir(parents=True, exist_ok=True)
        run_logged("npm-install-azurite",
                   [npm, "install", "--prefix", str(INSTALL_DIR), "--no-audit", "--no-fund",
                    f"azurite@{version}"])
        if installed_version() != version or not _MAIN.exists():
            raise DevServerError(f"azurite: npm finished but {_MAIN} is missing")
        return f"azurite {version} installed in {INSTALL_DIR}"


def start(*, location: str | Path | None = None, timeout: float = 90.0) -> AzuriteServer:
    """Start Azurite's blob service on a free 127.0.0.1 port (installing it if needed)."""
    install()
    node = shutil.which("node")
    if node is None:
        raise DevServerError("azurite: node is not on PATH")
    workdir = Path(tempfile.mkdtemp(prefix="azurite-"))  # its cwd: anything it writes
    storage = (["--location", str(location)] if location is not None
               else ["--inMemoryPersistence"])

    def argv(port: int) -> list[str]:
        return [node, str(_MAIN), "--blobHost", HOST, "--blobPort", str(port),
                "--skipApiVersionCheck", "--loose", "--disableTelemetry", *storage]

    try:
        proc, port = launch("azurite", argv, probe_for_port=lambda p: http_probe(HOST, p),
                            timeout=timeout, cwd=workdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return AzuriteServer(blob_endpoint=f"http://{HOST}:{port}/{ACCOUNT_NAME}", process=proc,
                         workdir=workdir)
