"""The Flink cluster a job runs on, through its REST API: what Beam's job server
does not do for the launcher.

    pipeline.run ── names the job ──> --job_name message-archiver-<run id>
                 ── SIGTERM ────────> result.cancel()   (the job server drops its invocation,
                                                         but the cluster's job runs on)
                                  └─> cancel_job(master, name): PATCH /jobs/<id>?mode=cancel
                                      for each job of that name not yet finished, waiting
                                      until it is (a job stuck RESTARTING holds its slots)

Plain HTTP to a cluster off loopback is refused unless --allow_insecure_http
(the same rule as the object stores'): a cluster's REST API takes job
submissions and cancellations from whoever can reach it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request

from archive.tenants import check_endpoint

_LOG = logging.getLogger(__name__)
EMBEDDED = ("[local]", "[auto]", "[collection]")  # a mini-cluster in the job server: no REST of its own
TERMINAL = frozenset({"FINISHED", "CANCELED", "FAILED"})


def job_name(run_id: str) -> str:
    """The job's name on the cluster: one run, one name, so the launcher finds its own job."""
    return f"message-archiver-{run_id.lower()}"


def rest_url(flink_master: str) -> str | None:
    """The REST base URL of --flink_master, or None for an embedded mini-cluster."""
    master = (flink_master or "").strip()
    if not master or master in EMBEDDED:
        return None
    return (master if "://" in master else "http://" + master).rstrip("/")


def check_master(flink_master: str, allow_insecure_http: bool) -> None:
    """TenantConfigError (a ValueError) for plain HTTP to a cluster off loopback,
    unless allowed; nothing is contacted."""
    url = rest_url(flink_master)
    if url is not None and not allow_insecure_http:
        check_endpoint(url, "--flink_master")


def _call(url: str, method: str = "GET", timeout: float = 10.0):
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


def unfinished_jobs(flink_master: str, name: str) -> list[dict]:
    """The cluster's jobs of that name not yet FINISHED, CANCELED or FAILED."""
    url = rest_url(flink_master)
    if url is None:
        return []
    jobs = _call(f"{url}/jobs/overview")["jobs"]
    return [job for job in jobs if job["name"] == name and job["state"] not in TERMINAL]


def cancel_job(flink_master: str, name: str, timeout: float = 60.0) -> list[str]:
    """Cancel every unfinished job of that name and wait until each has ended;
    returns their ids. Raises TimeoutError when one is still going after `timeout`."""
    url = rest_url(flink_master)
    if url is None:
        return []
    cancelled: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        left = unfinished_jobs(flink_master, name)
        if not left:
            return cancelled
        for job in left:
            if job["state"] != "CANCELLING":
                try:
                    _call(f"{url}/jobs/{job['jid']}?mode=cancel", method="PATCH")
                except urllib.error.HTTPError as exc:  # it ended between the listing and the call
                    _LOG.info("flink: cancel of job %s answered %s", job["jid"], exc.code)
                if job["jid"] not in cancelled:
                    cancelled.append(job["jid"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"flink: job {name} still {[j['state'] for j in left]} after {timeout:.0f}s")
        time.sleep(0.5)
