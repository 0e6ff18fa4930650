"""The archive job: options, sources, sinks and the entry point (`python -m pipeline.run`)."""
