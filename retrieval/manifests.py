"""The manifests' hash chain of a destination, read back, checked, and tombstoned on erasure.

    Bucket.objects(archive_manifests/tenant=T/) ── read_many ──> audit.check_chain ──> ChainReport
    erase: each manifest naming an erased key, or an erased (key, sha256) frame of a batched object
           ── audit.tombstoned ──> Bucket.replace (chain hash unchanged)

The pipeline writes the manifests (transforms.index); archive.audit holds the
format and the rules. A bucket without manifests (one CleverTap or Braze
filled) has no chain to check: verify says so rather than calling it broken.
"""

from __future__ import annotations

from archive import audit
from retrieval.bucket import Bucket


def tenants_with_manifests(bucket: Bucket, prefix: str = audit.MANIFEST_PREFIX) -> dict[str, list[str]]:
    """tenant -> its manifest keys (a tenant's folder is tenant=<name>)."""
    found: dict[str, list[str]] = {}
    for key, _ in bucket.objects(prefix):
        parts = key.split("/")
        if len(parts) == 3 and parts[1].startswith("tenant=") and audit.manifest_sequence(key) is not None:
            tenant = parts[1][len("tenant="):].replace("%3D", "=").replace("%2F", "/").replace("%25", "%")
            found.setdefault(tenant, []).append(key)
    return found


def check(bucket: Bucket, tenant: str, keys: list[str]) -> audit.ChainReport:
    """One tenant's chain, every manifest read; an unreadable one is a problem in the report."""
    read, problems = [], []
    for key, data in bucket.read_many(keys):
        if isinstance(data, BaseException):
            problems.append(f"{key}: could not be read ({type(data).__name__})")
        else:
            read.append((key, data))
    report = audit.check_chain(tenant, read)
    report.problems.extend(problems)
    return report


def tombstone(bucket: Bucket, erased: set[str], erasure: str, prefix: str = audit.MANIFEST_PREFIX,
              erased_entries: set[tuple[str, str]] = frozenset()) -> tuple[int, list]:
    """Replace the erased keys' entries (every entry of such a key) and the erased
    (key, sha256) entries (frames of batched objects, whose other frames keep theirs)
    in every manifest with tombstones. Returns (manifests rewritten, [(manifest key, why
    it was left)] for those the store kept)."""
    if not erased and not erased_entries:
        return 0, []
    named = {k.encode() for k in erased} | {k.encode() for k, _ in erased_entries}
    rewritten, left = 0, []
    for keys in tenants_with_manifests(bucket, prefix).values():
        for key, data in bucket.read_many(keys):
            if isinstance(data, BaseException) or not any(k in data for k in named):
                continue
            replaced = audit.tombstoned(data, erased, erasure, erased_entries)
            if replaced == data:
                continue
            lock = bucket.replace(key, replaced)
            if lock:
                left.append((key, lock))
            else:
                rewritten += 1
    return rewritten, left
