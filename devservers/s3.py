"""S3: moto's server mode in a subprocess (`python -m moto.server`), spoken to over HTTP.

moto comes from the virtualenv (`moto[server]`), so there is nothing to install.
What its server does (moto 5.2.5, checked by hand and in tests/test_devservers.py):

- Encryption. `ServerSideEncryption="AES256"` and `"aws:kms"` with `SSEKMSKeyId` are
  stored and echoed back by PutObject and HeadObject, and so is a bucket's default
  encryption, but nothing is validated: a KMS key that does not exist is accepted, and
  so is `ServerSideEncryption="bogus"`. Bytes are not encrypted. Good for "did we send
  the header", useless for "would AWS accept it".
- Object Lock. `create_bucket(..., ObjectLockEnabledForBucket=True)` turns versioning
  on; PutObject with `ObjectLockMode` (GOVERNANCE or COMPLIANCE) and
  `ObjectLockRetainUntilDate` is stored and shown by HeadObject; a bucket's default
  retention applies to new objects. DeleteObject *with a VersionId* of a locked
  version is refused (403 AccessDenied), as is one under legal hold; GOVERNANCE yields
  to `BypassGovernanceRetention=True`. DeleteObject without a VersionId adds a delete
  marker (204), as on AWS. Object Lock headers on a bucket without it: 400
  InvalidRequest. Differences from AWS: a retain-until date in the past is accepted,
  COMPLIANCE retention can be shortened, and `PutObjectLockConfiguration` wants an
  empty bucket.
- Metadata. `x-amz-meta-*`, Content-Type and Content-Encoding round-trip;
  `IfNoneMatch="*"` on an existing key is refused (412). Content-MD5 is not checked.
- Credentials. By default any access key and secret are accepted. moto checks them
  only after `INITIAL_NO_AUTH_ACTION_COUNT` actions (default: never); its
  `POST /moto-api/reset-auth` sets that count at run time. `start(auth=True)` creates
  an IAM user with an allow-all policy and an access key through the server's own IAM
  API, then turns checking on: an unknown key gets 403 InvalidAccessKeyId, a wrong
  secret 403 SignatureDoesNotMatch (SigV4 is recomputed, so a proxy in between must
  keep the Host header; `devservers.faultproxy` does).
- Throttling. moto has no fault injection: put `devservers.faultproxy.FaultProxy` in
  front of it and use `slow_down()` for 503 SlowDown.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from devservers._process import (
    HOST, DevServerError, RunningServer, ServerProcess, http_probe, launch)

DEFAULT_REGION = "us-east-1"
# moto without auth accepts any key; these are what the clients sign with.
_ANY_ACCESS_KEY = "devservers"
_ANY_SECRET_KEY = "devservers-secret"
_AUTH_USER = "devservers"
_ALLOW_ALL = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


@dataclass
class S3Server(RunningServer):
    endpoint_url: str
    region: str
    access_key: str
    secret_key: str
    process: ServerProcess = field(repr=False)
    auth: bool = False

    def storage_options(self, endpoint_url: str | None = None) -> dict[str, Any]:
        """s3fs options; `endpoint_url` overrides the server's (a FaultProxy's URL)."""
        return {"key": self.access_key, "secret": self.secret_key,
                "client_kwargs": {"endpoint_url": endpoint_url or self.endpoint_url,
                                  "region_name": self.region}}

    def boto3_client(self, service_name: str = "s3", **kwargs: Any):
        """A boto3 client on this server; kwargs override (endpoint_url, config, keys)."""
        import boto3

        options = {"endpoint_url": self.endpoint_url, "region_name": self.region,
                   "aws_access_key_id": self.access_key,
                   "aws_secret_access_key": self.secret_key}
        options.update(kwargs)
        return boto3.client(service_name, **options)

    def create_bucket(self, name: str, object_lock: bool = False) -> str:
        params: dict[str, Any] = {"Bucket": name}
        if object_lock:
            params["ObjectLockEnabledForBucket"] = True
        if self.region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        self.boto3_client().create_bucket(**params)
        return name

    def reset(self) -> None:
        """Forget every bucket and object. With auth, a new access key is made."""
        _moto_api(self.endpoint_url, "/moto-api/reset", b"")
        if self.auth:
            _moto_api(self.endpoint_url, "/moto-api/reset-auth", b"inf")
            self.access_key, self.secret_key = _provision_credentials(self)
            _moto_api(self.endpoint_url, "/moto-api/reset-auth", b"0")


def _moto_api(endpoint_url: str, path: str, body: bytes) -> dict[str, Any]:
    # text/plain: with a form content type Flask eats the body before moto reads it.
    host_port = endpoint_url.split("://", 1)[1]
    conn = http.client.HTTPConnection(host_port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise DevServerError(f"moto {path}: HTTP {resp.status}: {payload[:500]!r}")
    return json.loads(payload or b"{}")


def _provision_credentials(server: S3Server) -> tuple[str, str]:
    """An IAM user allowed everything, and its access key, made through moto's IAM API."""
    iam = server.boto3_client("iam", aws_access_key_id=_ANY_ACCESS_KEY,
                              aws_secret_access_key=_ANY_SECRET_KEY)
    iam.create_user(UserName=_AUTH_USER)
    iam.put_user_policy(UserName=_AUTH_USER, PolicyName="allow-all",
                        PolicyDocument=json.dumps(_ALLOW_ALL))
    key = iam.create_access_key(UserName=_AUTH_USER)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def install() -> str:
    """moto is a Python dependency of the virtualenv: only check that it imports."""
    try:
        import moto
        import moto.server  # noqa: F401  (needs the [server] extra: flask, werkzeug)
    except ImportError as exc:
        raise DevServerError(
            f"moto's server mode is missing from {sys.executable}: "
            f"pip install 'moto[server]' ({exc})") from exc
    return f"moto {moto.__version__} (in the virtualenv)"


def start(*, auth: bool = False, region: str = DEFAULT_REGION,
          timeout: float = 60.0) -> S3Server:
    """Start moto on a free 127.0.0.1 port; with `auth=True` credentials are checked."""
    install()
    env = dict(os.environ)
    # Checking starts only once the server is set up (see _provision_credentials).
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    env.pop("TEST_SERVER_MODE", None)
    proc, port = launch(
        "moto", lambda p: [sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(p)],
        probe_for_port=lambda p: http_probe(HOST, p, "/"),
        timeout=timeout, env=env)
    server = S3Server(endpoint_url=f"http://{HOST}:{port}", region=region,
                      access_key=_ANY_ACCESS_KEY, secret_key=_ANY_SECRET_KEY,
                      process=proc, auth=auth)
    if auth:
        started = time.monotonic()
        try:
            server.access_key, server.secret_key = _provision_credentials(server)
            _moto_api(server.endpoint_url, "/moto-api/reset-auth", b"0")
        except Exception:
            server.stop()
            raise
        proc.startup_seconds = (proc.startup_seconds or 0.0) + time.monotonic() - started
    return server
