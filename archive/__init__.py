"""The archiver's domain logic, free of Beam: decode, key, payload, encode, store.

Beam code lives in `transforms` (DoFns and composite PTransforms) and
`pipeline` (options, sources, sinks, entry point); both call into here.
"""
