"""Retrieval: find, show, verify, export and erase what the pipeline (or CleverTap, or Braze) archived.

    destination ── retrieval.bucket.Bucket (list, read, byte ranges; transport rules as the pipeline's)
         │
         ├── retrieval.index:   the audit index (Parquet beside the objects): rebuild, find
         ├── retrieval.content: an index row's bytes read back: a message's JSON or .eml, or one
         │                      frame of a batched object
         ├── archive.eml:       an email payload as an RFC 5322 message (shared with the pipeline)
         ├── retrieval.cli:     message-archiver find | show | verify | export | erase | index | reconcile
         └── retrieval.web:     message-archiver serve

It reads the archive through the domain's own rules (archive.audit: key
layouts, key templates, batched objects' keys, index rows, a person's
digests; archive.frames: a batched object's frames) and never imports the
pipeline.
"""
