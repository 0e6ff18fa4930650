"""Retrieval: find, show, verify, export and erase what the pipeline (or CleverTap, or Braze) archived.

    destination ── retrieval.bucket.Bucket (list, read; transport rules as the pipeline's)
         │
         ├── retrieval.index: the audit index (Parquet beside the objects): rebuild, find
         ├── archive.eml:     an email payload as an RFC 5322 message (shared with the pipeline)
         └── retrieval.cli:   message-archiver find | show | verify | export | erase | index

It reads the archive through the domain's own rules (archive.audit: key
layouts, index rows, a person's digests) and never imports the pipeline.
"""
