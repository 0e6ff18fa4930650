"""Which Beam Python SDK, Flink job server and Flink go together here, and why.

The one place these versions are named; `tests/test_versions.py` fails when what
is installed drifts from them.

- BEAM_PYTHON_SDK 2.77.0: the SDK the job is written against (setup.py pins it).
  Prism and the PROCESS boot binary are built from Beam's Go module at this
  version.
- FLINK_JOB_SERVER_BEAM 2.62.0 with FLINK 1.19.0: Maven Central, as served here,
  has Beam Java only up to 2.73 and no prebuilt job-server jar at all; the job
  server is assembled from `beam-runners-flink-1.19` and its dependencies, and
  2.62.0 is the newest release whose whole dependency tree resolves. The
  portable runner speaks the Fn API across versions, so the 2.77 SDK harness
  runs under the 2.62 job server (checked by the Flink tests, batch and
  streaming). Flink 1.19.0 is the version that runner was built against, and
  the session cluster runs the same Flink jars. On a cluster of your own, use the
  job server that matches your Flink and, where it is published, your Beam
  version (`beam-runners-flink-<flink>-job-server:<beam>`).
- BEAM_JAVA_EXPANSION 2.73.0: the Java expansion service for the cross-language
  KafkaIO reader (the newest Beam Java served).
"""

BEAM_PYTHON_SDK = "2.77.0"
FLINK_JOB_SERVER_BEAM = "2.62.0"
FLINK_MINOR = "1.19"
FLINK = "1.19.0"
BEAM_JAVA_EXPANSION = "2.73.0"
