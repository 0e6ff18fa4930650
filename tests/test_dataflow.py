"""Dataflow readiness: the three jobs translate for Dataflow, the workers get the
package, the flex template's files agree with the job, and a plain install runs it.

    argv ─ pipeline.run.job_pipeline (as `python -m pipeline.run` builds it) ─ DataflowRunner --dry_run
         ─ the translated job: its transforms, its worker image, its staged package, streaming or not
    setup.py ─ sdist ─ pip install --target ─ every module imports from it; `message-archiver` exits as main() does
    deploy/dataflow/{Dockerfile, metadata.json, cloudbuild.yaml} ─ checked statically (no Docker engine here)

The dry runs talk to no one: each runs under the loopback-only guard, which fails the
test on any lookup of, or connection to, a host off loopback (Beam's dry run returns
the job before any upload; a temp location Beam finds invalid would make it look for
a default bucket, which the guard would catch). The sdist is built by a local
`setup.py sdist` subprocess, which makes no connection.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tarfile

import apache_beam as beam
import pytest
import yaml
from apache_beam.options.pipeline_options import DebugOptions, StandardOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient
from apache_beam.runners.runner import PipelineResult
from packaging.specifiers import SpecifierSet

from archive.sample import generate
from pipeline import run
from pipeline.options import ArchiveOptions, UsageError, options_parser
from tests.test_transport import loopback_only  # noqa: F401  (the guard, as a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy", "dataflow")
PACKAGES = ("archive", "pipeline", "transforms")
WORKER_IMAGE = (f"gcr.io/cloud-dataflow/v1beta3/beam_python{sys.version_info.major}.{sys.version_info.minor}"
                f"_sdk:{beam.__version__}")
LAUNCHER_BASE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"

# What a user gives Dataflow (see deploy/dataflow/README.md); names only, nothing is contacted.
DATAFLOW = ["--runner", "DataflowRunner", "--dry_run=True", "--project", "archiver-project",
            "--region", "us-central1", "--temp_location", "gs://archiver-temp/tmp",
            "--setup_file", os.path.join(ROOT, "setup.py")]
BUCKET = "gs://archive-bucket"


def batch_argv(sends: str) -> list[str]:
    return ["--input", sends, "--destination", f"{BUCKET}/archive", "--outcomes", f"{BUCKET}/outcomes"]


KAFKA = ["--kafka_topic", "sends", "--kafka_bootstrap_servers", "10.128.0.5:9092",
         "--destination", f"{BUCKET}/archive", "--outcomes", f"{BUCKET}/outcomes",
         "--deliveries", "kafka://deliveries", "--failures", "kafka://failures"]
PUBSUB = ["--pubsub_subscription", "projects/archiver-project/subscriptions/sends",
          "--destination", f"{BUCKET}/archive", "--outcomes", "pubsub://projects/archiver-project/topics/outcomes",
          "--deliveries", "pubsub://projects/archiver-project/topics/deliveries",
          "--failures", f"{BUCKET}/failures"]

# job, its flags, the transforms at the top of its graph, is it a stream
JOBS = [
    ("batch", None, {"ReadMessages", "Archive", "WriteOutcomes", "WriteDeadLetters", "WriteAuditIndex"}, False),
    ("kafka", KAFKA, {"ReadKafka", "Archive", "Gate", "Publish", "CommitOffsets", "WriteAuditIndex"}, True),
    ("pubsub", PUBSUB, {"ReadPubSub", "Archive", "Gate", "Publish", "WriteAuditIndex"}, True),
]


@pytest.fixture
def sends(tmp_path):
    """A few outbound messages, as a backfill reads them (read by the workers, not here)."""
    path = tmp_path / "sends.jsonl"
    path.write_bytes(b"\n".join(generate(20)) + b"\n")
    return str(path)


@pytest.fixture
def keep_sigterm():
    """A streaming main() makes SIGTERM stop it like Ctrl-C; the test session keeps its own."""
    handler = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, handler)


def job_argv(flags, sends) -> list[str]:
    return (batch_argv(sends) if flags is None else list(flags)) + DATAFLOW


def staged(environment) -> dict[str, str]:
    """staged name -> local file of each artifact the workers get."""
    found = {}
    for dependency in environment.dependencies:
        assert dependency.type_urn == "beam:artifact:type:file:v1"
        name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload).staged_name
        found[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(dependency.type_payload).path
    return found


def repo_modules() -> list[str]:
    """Every module of the job's packages, from the repository's files."""
    modules = []
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            if "__pycache__" in folder:
                continue
            for name in sorted(files):
                if name.endswith(".py"):
                    dotted = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                    modules.append(dotted.removesuffix(".__init__"))
    return sorted(modules)


# --- the dry runs ----------------------------------------------------------------------

@pytest.mark.parametrize("job, flags, transforms, streaming", JOBS, ids=[j[0] for j in JOBS])
def test_each_job_translates_for_dataflow_with_the_package_for_its_workers(
        loopback_only, sends, job, flags, transforms, streaming):
    pipeline, archive, is_stream = run.job_pipeline(job_argv(flags, sends))
    assert is_stream is streaming
    result = pipeline.run()
    assert type(result) is PipelineResult  # a dry run: translated, nothing submitted
    translated = result.job

    assert translated.proto.type_ == (2 if streaming else 1)  # JOB_TYPE_STREAMING / JOB_TYPE_BATCH
    graph = translated.proto_pipeline.components
    top = {t.unique_name for t in graph.transforms.values() if "/" not in t.unique_name
           and not t.unique_name.startswith("ref_")}
    assert top == transforms
    assert any(t.unique_name.startswith("Archive/") for t in graph.transforms.values())

    (environment,) = graph.environments.values()  # one worker environment for every step
    assert environment.urn == "beam:env:docker:v1"
    assert beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image == WORKER_IMAGE
    artifacts = staged(environment)
    # The workers pip-install this sdist of setup.py: everything the job imports.
    package = artifacts["workflow.tar.gz"]
    assert os.path.basename(package) == "message_archiver-0.1.0.tar.gz"
    with tarfile.open(package) as sdist:
        shipped = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    wanted = {m.replace(".", "/") + ".py" for m in repo_modules()} | {
        f"{m.replace('.', '/')}/__init__.py" for m in repo_modules()}
    wanted = {path for path in wanted if os.path.isfile(os.path.join(ROOT, path))}
    assert wanted - shipped == set()
    schemas = {f"archive/schemas/{n}" for n in os.listdir(os.path.join(ROOT, "archive", "schemas"))
               if n.endswith(".json")}
    assert schemas and schemas <= shipped

    options = translated.options
    assert options.view_as(StandardOptions).streaming is streaming
    experiments = set(options.view_as(DebugOptions).experiments or [])
    if streaming:  # Runner v2 (Python SDFs: the Kafka reader) on Streaming Engine
        assert {"use_runner_v2", "enable_streaming_engine"} <= experiments
    assert archive.run_id


def test_the_pubsub_stream_reads_with_dataflows_own_pubsub_source(loopback_only):
    pipeline, _, _ = run.job_pipeline(PUBSUB + DATAFLOW)
    urns = {t.spec.urn for t in pipeline.run().job.proto_pipeline.components.transforms.values()}
    assert "beam:transform:pubsub_read:v1" in urns  # acked by the service after durable processing


@pytest.mark.parametrize("job, flags, transforms, streaming", JOBS, ids=[j[0] for j in JOBS])
def test_the_entry_point_dry_run_exits_0_and_says_nothing_was_submitted(
        loopback_only, keep_sigterm, sends, capsys, job, flags, transforms, streaming):
    assert run.main(job_argv(flags, sends)) == 0
    assert "dry run: the job was translated and validated, not submitted" in capsys.readouterr().out


def test_a_runner_complaint_is_a_usage_error(loopback_only, sends, capsys):
    """Dataflow's own validation (here: a project id that is not one) exits 2, one line."""
    argv = job_argv(None, sends)
    argv[argv.index("archiver-project")] = "Archiver Project"
    assert run.main(argv) == run.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Project ID" in err and err.count("\n") == 1


# --- outputs that would vanish with a worker --------------------------------------------

WORKER_DISK = [
    (None, "--destination", "local_run/archive"),
    (None, "--outcomes", "file:///tmp/outcomes"),
    (None, "--dead_letters", "memory://dead-letters"),
    (None, "--destination", "/var/archive"),
    (KAFKA, "--deliveries", "local_run/deliveries"),
    (KAFKA, "--failures", "file:///tmp/failures"),
    (PUBSUB, "--outcomes", "outcomes"),
]


@pytest.mark.parametrize("flags, flag, url", WORKER_DISK)
def test_an_output_on_the_workers_disks_is_refused_on_dataflow(loopback_only, sends, capsys, flags, flag, url):
    argv = job_argv(flags, sends) + [flag, url]
    assert run.main(argv) == run.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {flag} ") and "local disks" in err and err.count("\n") == 1
    # The same output is fine off Dataflow: the check is the runner's, not the URL's.
    local = (batch_argv(sends) if flags is None else list(flags)) + [flag, url]
    archive = run.PipelineOptions(local).view_as(ArchiveOptions)
    run.check_outputs_outlive_workers(archive)


@pytest.mark.parametrize("flags, flag, url", [
    (None, "--destination", "s3://archive-bucket/archive"),
    (None, "--dead_letters", "abfs://letters@account.dfs.core.windows.net/dl"),
    (KAFKA, "--outcomes", "kafka://outcomes"),
    (PUBSUB, "--failures", "pubsub://projects/archiver-project/topics/failures"),
])
def test_buckets_and_topics_are_outputs_dataflow_accepts(flags, flag, url):
    argv = (batch_argv("gs://in/sends.jsonl") if flags is None else list(flags)) + [flag, url] + DATAFLOW
    run.check_outputs_outlive_workers(run.PipelineOptions(argv).view_as(ArchiveOptions))


def test_with_a_tenant_file_the_unused_destination_is_not_checked():
    argv = batch_argv("gs://in/sends.jsonl") + ["--tenants", "gs://cfg/tenants.yaml",
                                                "--dead_letters", f"{BUCKET}/dl"] + DATAFLOW
    archive = run.PipelineOptions(argv + ["--destination", "local_run/archive"]).view_as(ArchiveOptions)
    run.check_outputs_outlive_workers(archive)
    with pytest.raises(UsageError, match="--outcomes"):
        run.check_outputs_outlive_workers(
            run.PipelineOptions(argv + ["--outcomes", "local_run/o"]).view_as(ArchiveOptions))


# --- the package, installed as a user installs it ---------------------------------------

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """setup.py's sdist (as Beam builds it for the workers) pip-installed into a folder."""
    dist, target = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(dist)], cwd=ROOT, check=True,
                   capture_output=True)
    (sdist,) = dist.iterdir()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(target), str(sdist)], check=True,
                   capture_output=True)
    return target


def _installed_env(target) -> dict:
    return {**os.environ, "PYTHONPATH": str(target)}


def test_every_module_the_job_has_imports_from_the_installed_package(installed, tmp_path):
    probe = (
        "import importlib, json, sys\n"
        f"modules = {repo_modules()!r}\n"
        "files = {m: importlib.import_module(m).__file__ for m in modules}\n"
        "from archive import schemas\n"
        "loaded = [sorted(schemas.load(n)) for n in schemas.NAMES]\n"
        "print(json.dumps(files))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=_installed_env(installed),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    files = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(files) == set(repo_modules())
    outside = {m: f for m, f in files.items() if not f.startswith(str(installed))}
    assert outside == {}  # nothing came from the checkout


@pytest.mark.parametrize("args, status, words", [
    (["--help"], 0, "--kafka_reader"),
    (["--no_such_flag"], run.EXIT_USAGE, "unknown flag --no_such_flag"),
    (["--input", "no-such-file-*.jsonl"], run.EXIT_USAGE, "no input files match"),
])
def test_the_console_script_runs_main_and_exits_with_its_status(installed, tmp_path, args, status, words):
    script = installed / "bin" / "message-archiver"
    assert script.is_file()
    done = subprocess.run([str(script), *args], cwd=tmp_path, env=_installed_env(installed),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == status, done.stderr[-2000:]
    assert words in done.stdout + done.stderr


def test_the_installed_metadata_names_the_extras_and_the_script(installed):
    (info,) = installed.glob("message_archiver-*.dist-info")
    metadata = (info / "METADATA").read_text()
    assert "Provides-Extra: dataflow" in metadata
    assert re.search(r"^Requires-Dist: apache-beam\[gcp\]==2\.77\.0; extra == \"dataflow\"$", metadata, re.M)
    for plain in ("confluent-kafka", "google-cloud-pubsub"):  # the streaming commands need no extra
        assert re.search(rf"^Requires-Dist: {plain}\b(?!.*extra ==)", metadata, re.M)
    entry_points = (info / "entry_points.txt").read_text()
    assert re.search(r"^message-archiver = cli:main$", entry_points, re.M)


# --- the flex template's files ----------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/dataflow/Dockerfile, comments and continuations resolved."""
    text = open(os.path.join(DEPLOY, "Dockerfile")).read().replace("\\\n", " ")
    return [tuple((line.strip().split(None, 1) + [""])[:2]) for line in text.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def copies() -> dict[str, str]:
    """Container path -> repository path of each COPY."""
    found = {}
    for instruction, args in dockerfile():
        if instruction.upper() == "COPY":
            source, destination = args.split()
            found[destination.rstrip("/")] = source.rstrip("/")
    return found


def env() -> dict[str, str]:
    found = {}
    for instruction, args in dockerfile():
        if instruction.upper() == "ENV":
            name, value = args.split("=", 1)
            found[name] = value.strip('"')
    return found


def test_the_launcher_image_is_dataflows_python_launcher_for_the_workers_python():
    (base,) = [args for instruction, args in dockerfile() if instruction.upper() == "FROM"]
    assert base.split("@")[0].split(":")[0] == LAUNCHER_BASE
    # The launcher pickles the graph and Beam names the workers' image after the
    # launcher's Python (beam_python3.11_sdk:2.77.0): a Python Dataflow runs, and
    # one this project's setup.py accepts.
    launcher_python = "3.11"
    assert launcher_python in apiclient._PYTHON_VERSIONS_SUPPORTED_BY_DATAFLOW
    (requires,) = re.findall(r'python_requires="([^"]+)"', open(os.path.join(ROOT, "setup.py")).read())
    assert launcher_python in SpecifierSet(requires)


def test_every_copy_source_is_in_the_repository_and_passes_the_ignore_file():
    ignore = [line.strip() for line in open(os.path.join(DEPLOY, "Dockerfile.dockerignore"))
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    let_through = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copies()
    for source in copies().values():
        assert os.path.exists(os.path.join(ROOT, source)), source
        assert source in let_through, source
    # Every package the job imports is copied (the launcher builds the graph from them).
    assert set(PACKAGES) | {"setup.py"} <= set(copies().values())


def test_the_template_runs_the_entry_point_and_stages_setup_py():
    variables, copied = env(), copies()
    for name in ("FLEX_TEMPLATE_PYTHON_PY_FILE", "FLEX_TEMPLATE_PYTHON_SETUP_FILE"):
        assert variables[name] in copied, f"{name} names {variables[name]}, which nothing copies"
        assert os.path.isfile(os.path.join(ROOT, copied[variables[name]]))
    assert copied[variables["FLEX_TEMPLATE_PYTHON_SETUP_FILE"]] == "setup.py"
    program = open(os.path.join(ROOT, copied[variables["FLEX_TEMPLATE_PYTHON_PY_FILE"]])).read()
    assert "from pipeline.run import main" in program and "sys.exit(main())" in program
    runs = [args for instruction, args in dockerfile() if instruction.upper() == "RUN"]
    assert any(re.search(r"pip install .*/template\[dataflow\]", r) for r in runs)


def test_cloud_build_builds_this_dockerfile_from_the_repository_root():
    config = yaml.safe_load(open(os.path.join(DEPLOY, "cloudbuild.yaml")))
    (step,) = config["steps"]
    args = step["args"]
    assert args[0] == "build" and args[-1] == "."
    assert os.path.isfile(os.path.join(ROOT, args[args.index("-f") + 1]))
    assert config["images"] == [args[args.index("-t") + 1]]


# --- metadata.json: one parameter per job flag ------------------------------------------

def job_flags() -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser(add_help=False)
    ArchiveOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions}


def template_parameters() -> dict[str, dict]:
    with open(os.path.join(DEPLOY, "metadata.json")) as handle:
        metadata = json.load(handle)
    assert metadata["name"] and metadata["description"]
    names = [p["name"] for p in metadata["parameters"]]
    assert len(names) == len(set(names))
    return {p["name"]: p for p in metadata["parameters"]}


def test_metadata_names_every_job_flag_and_no_other():
    assert set(template_parameters()) == set(job_flags())


def test_metadata_is_what_the_generator_prints_from_the_flags():
    sys.path.insert(0, DEPLOY)
    try:
        import template_metadata
    finally:
        sys.path.remove(DEPLOY)
    assert open(os.path.join(DEPLOY, "metadata.json")).read() == template_metadata.render(), (
        "run: python deploy/dataflow/template_metadata.py > deploy/dataflow/metadata.json")


def test_each_parameter_has_its_flags_help_and_is_optional():
    flags = job_flags()
    for name, parameter in template_parameters().items():
        assert parameter["helpText"] == flags[name].help
        assert parameter["label"] and parameter["isOptional"] is True  # each job needs a different few


def test_each_flags_default_and_choices_pass_its_regexes():
    flags = job_flags()
    for name, parameter in template_parameters().items():
        action = flags[name]
        for value in ([action.default] if action.default is not None else []) + list(action.choices or []):
            for regex in parameter.get("regexes", []):
                assert re.fullmatch(regex, str(value)), (name, value, regex)


# parameter, values Dataflow must accept, values it must refuse before launching
REGEXES = [
    ("run_id", ["20261202T053000Z-3f9a1c", "backfill.2026_01"], ["../x", ".hidden", "-x", "a/b", "x" * 65]),
    ("pubsub_subscription", ["projects/p/subscriptions/s"], ["p/s", "projects/p/topics/t", "projects//subscriptions/s"]),
    ("max_in_flight", ["64", "1"], ["-1", "1.5", "lots", ""]),
    ("hold_seconds", ["0", "1.5", "300", ".5"], ["-1", "1e9", "nan", ""]),
    ("overwrite", ["true", "FALSE", "yes", "0"], ["maybe", "", "truth"]),
    ("profile", ["clevertap", "braze"], ["Braze", "other", ""]),
    ("compression", ["lz4", "gzip", "zstd", "none"], ["brotli", ""]),
    ("kafka_reader", ["python", "xlang"], ["java"]),
    ("default_region", ["GB", "in"], ["USA", "1", ""]),
    ("storage_options", ['{}', '{"anon": true}'], ["anon", "[]", ""]),
    ("expansion_service", ["127.0.0.1:8097", "expansion:8097"], ["8097", "host:"]),
]


@pytest.mark.parametrize("name, good, bad", REGEXES, ids=[r[0] for r in REGEXES])
def test_a_parameters_regexes_accept_what_the_job_takes_and_refuse_the_rest(name, good, bad):
    regexes = template_parameters()[name]["regexes"]
    for value in good:
        assert all(re.fullmatch(r, value) for r in regexes), value
        if value:  # the job itself takes it too, as the launcher passes it
            options_parser().parse_args([f"--{name}={value}"])
    for value in bad:
        assert not all(re.fullmatch(r, value) for r in regexes), value


# --- deploy/dataflow/README.md: what it shows is what the job takes ---------------------

def readme_sections() -> dict[str, str]:
    text = open(os.path.join(DEPLOY, "README.md")).read()
    return {part.split("\n", 1)[0].strip(): part for part in text.split("\n## ")[1:]}


def test_the_direct_run_commands_use_only_flags_the_job_knows():
    direct = readme_sections()["Direct run (from a checkout)"]
    shown = {flag for flag in re.findall(r"(?<![\w-])--[a-z_]+", direct)}
    known = {option for action in options_parser()._actions for option in action.option_strings}
    assert shown and shown <= known, shown - known


def test_the_flex_template_runs_pass_only_the_templates_parameters():
    flex = readme_sections()["Flex template"]
    given = [re.split(r"\s", part, 1)[0] for part in re.findall(r"--parameters (?:\^~\^)?(\S+)", flex)]
    names = {pair.split("=", 1)[0] for run in given for pair in re.split(r"[,~]", run) if "=" in pair}
    assert names and names <= set(template_parameters()), names - set(template_parameters())
