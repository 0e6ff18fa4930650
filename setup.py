"""Message archiver: Beam pipeline that archives every outbound campaign message
as one compressed JSON object in the customer's bucket (CleverTap and Braze contracts)."""

from setuptools import find_packages, setup

# Beam's Google Cloud extras: the DataflowRunner's client (job submission, staging,
# the dry run). The workers' image already has them; the submitting machine needs them.
DATAFLOW = ["apache-beam[gcp]==2.77.0"]

setup(
    name="message-archiver",
    version="0.1.0",
    description="Archive outbound campaign messages (email, push, SMS, WhatsApp, MMS) to S3, Azure Blob or GCS",
    python_requires=">=3.10",
    packages=find_packages(include=["archive", "archive.*", "pipeline", "pipeline.*", "transforms", "transforms.*",
                                    "retrieval", "retrieval.*", "cli"]),
    package_data={"archive.schemas": ["*.json"]},
    install_requires=[
        "apache-beam==2.77.0",
        "fsspec>=2024.6",
        "s3fs>=2024.6",
        "adlfs>=2024.4",
        "gcsfs>=2024.6",
        # the direct S3/Azure write path (archive.direct reads its error text: pinned to a minor)
        "obstore>=0.12.1,<0.13",
        "lz4>=4.3",
        "zstandard>=0.22",
        "pyarrow>=14",
        "phonenumbers>=8.13",
        "pyyaml>=6",
        # recipient addresses: RFC 5321/5322 syntax and IDNA domains, strictly
        "email-validator>=2.1",
        # the streaming sources and sinks (python -m pipeline.run --kafka_topic / --pubsub_subscription)
        "confluent-kafka>=2.3",
        "google-cloud-pubsub>=2.20",
        # message-archiver serve: the read-only web page over an archive
        "starlette>=0.37",
        "jinja2>=3.1",
        "uvicorn>=0.29",
    ],
    entry_points={"console_scripts": ["message-archiver = cli:main"]},
    extras_require={
        "dataflow": DATAFLOW,
        "test": DATAFLOW + [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "jsonschema>=4.21",
            "psutil>=5.9",
            # real servers and the clouds' own SDKs, to read back what we wrote
            "moto[server]>=5",
            "boto3>=1.34",
            "azure-storage-blob>=12.19",
            "google-cloud-storage>=2.14",
            "aiohttp>=3.9",
            # the benchmark's plots (its smoke run is part of the tests)
            "matplotlib>=3.8",
            # drives Debian's chromium (no browser download) in the web page's tests
            "playwright>=1.40",
        ],
    },
)
