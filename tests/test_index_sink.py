"""transforms.index's manifest writer: workers that share a chain never fork it.

Two DoFn instances (two workers) append to one tenant's chain through the real
store, each with its own idea of the head; the one whose next sequence number
was taken reads the new head and takes the next. Against a folder and moto.
"""

import json
import uuid

import pytest

from archive import audit
from archive.store import StoreSpec
from archive.tenants import TenantDirectory
from retrieval import manifests
from retrieval.bucket import Bucket
from transforms.index import _WriteManifestFn


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_workers_extend_one_chain_without_forking_it(tmp_path, s3_server, kind):
    if kind == "local":
        url, options = str(tmp_path / "archive"), {}
    else:
        url, options = f"s3://{s3_server.create_bucket(f'chain-{uuid.uuid4().hex[:8]}')}", s3_server.storage_options()
    spec = StoreSpec(url, options)
    tenants = TenantDirectory.single(url, options)
    workers = [_WriteManifestFn(spec, tenants, f"run-{n}") for n in range(2)]
    for worker in workers:
        worker.setup()
    try:
        order = [0, 1, 0, 0, 1, 1, 0]  # each worker's cached head goes stale in turn
        for step, which in enumerate(order):
            workers[which].process(("t1", [(f"sent_messages/sms/{'a' * 32}/c/m{step}.json.gz", f"{step:064d}")]))
    finally:
        for worker in workers:
            worker.teardown()
    bucket = Bucket(url, options)
    (keys,) = manifests.tenants_with_manifests(bucket).values()
    assert sorted(audit.manifest_sequence(k) for k in keys) == list(range(len(order)))
    report = manifests.check(bucket, "t1", keys)
    assert report.problems == [] and len(report.entries) == len(order)
    runs = [json.loads(bucket.read(key))["run_id"] for key in sorted(keys)]
    assert runs == [f"run-{n}" for n in order]
