"""Beam transforms of the archiver. The public face is the composite transforms;
their DoFns are private to each module."""

from transforms.archive import ArchiveMessages, ArchiveResult, SourcedRecord

__all__ = ["ArchiveMessages", "ArchiveResult", "SourcedRecord"]
