"""Real object-store emulators on 127.0.0.1, for the tests and the benchmarks.

Each server runs as its own process on a free loopback port and is spoken to over
HTTP by the real clients (boto3/s3fs, azure-storage-blob/adlfs,
google-cloud-storage/gcsfs); nothing is mocked.

- `devservers.s3.start()`: moto in server mode (from the virtualenv).
- `devservers.azurite.start()`: Azurite's blob service (npm, installed once).
- `devservers.gcs.start()`: fake-gcs-server (Go, built once).
- `devservers.gofakes3.start()`: a fast in-memory S3 (Go, built once), the benchmarks' store.
- `devservers.faultproxy.FaultProxy`: a reverse proxy in front of any of them that
  adds latency or answers chosen requests with errors (503 SlowDown, 429, ...).

What is installed lives under `<repo>/.cache/devservers/` (or `$DEVSERVERS_CACHE`),
and so do the servers' logs (`logs/`). `python -m devservers install all` installs
ahead of time; `python -m devservers run s3|azurite|gcs` runs one in the foreground.
"""

from devservers._process import CACHE_ROOT, DevServerError

__all__ = ["CACHE_ROOT", "DevServerError"]
