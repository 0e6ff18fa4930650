"""What the README and docs show must work as shown."""

import os

from archive import tenants

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_example_tenant_file_loads_and_routes_as_its_comments_say():
    env = {"GLOBEX_AZURE_CONNECTION_STRING": "AccountName=g;AccountKey=eA==;BlobEndpoint=https://g.example",
           "UMBRELLA_ACCESS_KEY": "a", "UMBRELLA_SECRET_KEY": "b"}
    directory = tenants.load(os.path.join(ROOT, "docs", "tenants.example.yaml"), env)
    routes = {name: t.destination.url for name, t in directory.tenants.items()}
    assert routes == {"acme": "s3://acme-message-archive", "globex": "s3://globex-archive",
                      "initech": "gs://initech-archive", "umbrella": "s3://archive"}
    assert "whatsapp" not in directory.tenants["acme"].channels
    assert directory.tenants["acme"].destination.s3.object_lock_days == 2555
    assert directory.tenants["globex"].email_format == "both"
    assert directory.tenants["initech"].key_template.prefix == "archive"
    assert (directory.tenants["umbrella"].object_mode, directory.tenants["umbrella"].batch.max_messages) == (
        "batched", 10_000)
    assert directory.tenants["acme"].object_mode == "message" and directory.tenants["acme"].key_template is None


def test_the_readmes_retrieval_example_runs_as_written(tmp_path):
    """The README's walk-through (find, show, verify, export, erase, verify) on what
    ./run_local.sh archives, run line by line as a user would: each exits 0."""
    import json
    import re
    import subprocess
    import sys

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Finding, verifying, exporting and erasing", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.startswith("$M ")]
    assert [c.split()[1] for c in commands][:8] == ["find", "show", "verify", "export", "erase", "erase", "verify",
                                                    "serve"]
    destination, inputs = tmp_path / "archive", tmp_path / "messages.jsonl.gz"
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-m", "archive.sample", "--count", "5000", "--profile", "clevertap",
                    "--out", str(inputs)], cwd=ROOT, check=True, capture_output=True, env=env)
    subprocess.run([sys.executable, "-m", "pipeline.run", "--input", str(inputs), "--destination", str(destination),
                    "--outcomes", str(tmp_path / "outcomes"), "--default_region", "US", "--summary", "false"],
                   cwd=ROOT, check=True, capture_output=True, env=env)
    message_id = None
    for command in commands:
        if command.split()[1] in ("serve", "index", "reconcile"):
            continue  # a server, and commands for other buckets: tests/test_web.py, test_retrieval.py
        words = command.replace("$D", str(destination)).replace("wei.zip", str(tmp_path / "wei.zip")).split()
        if "MESSAGE_ID" in words:
            words[words.index("MESSAGE_ID")] = message_id
        done = subprocess.run([sys.executable, "-m", "cli", *words[1:]], cwd=ROOT, capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        if words[1] == "find":
            found = re.findall(r"^\S+ \S+\s+email\s+(\S+)", done.stdout, re.M)
            assert found, done.stdout
            message_id = found[0]
        if words[1] == "verify":
            assert "0 missing, 0 changed" in done.stdout and "0 chain problem" in done.stdout
    assert (tmp_path / "wei.zip").stat().st_size > 0
    assert json.loads(subprocess.run([sys.executable, "-m", "cli", "find", "--destination", str(destination),
                                      "--email", "wei.nguyen@example.com", "--json"], cwd=ROOT, env=env,
                                     capture_output=True, text=True).stdout)["count"] == 0


def test_the_readmes_shape_examples_run_as_written(tmp_path):
    """Each command of the README's "Other shapes" block, on sample messages: exit 0,
    and the archive in the shape the README says."""
    import re
    import subprocess
    import sys

    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme.split("## Other shapes", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    commands = [line.strip() for line in block.splitlines() if line.startswith("python -m pipeline.run")]
    assert len(commands) == 3
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-m", "archive.sample", "--count", "300", "--profile", "clevertap",
                    "--out", str(tmp_path / "messages.jsonl.gz")], cwd=tmp_path, check=True, capture_output=True,
                   env=env)
    import shlex
    for command in commands:
        words = shlex.split(command)
        done = subprocess.run([sys.executable, *words[1:], "--default_region", "US", "--summary", "false",
                               "--outcomes", str(tmp_path / f"outcomes-{len(os.listdir(tmp_path))}")],
                              cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, (command, done.stderr[-2000:])
    files = {name: [os.path.relpath(os.path.join(folder, f), tmp_path / name)
                    for folder, _, found in os.walk(tmp_path / name) for f in found]
             for name in ("archive-batched", "archive-eml", "archive-keys")}
    assert any(re.fullmatch(r"sent_batches/default/\w+/\d{4}/\d\d/\d\d/\d{6}-s0000-p\d{4}\.jsonl\.lz4", f)
               for f in files["archive-batched"])
    assert not any(f.startswith("sent_messages/") for f in files["archive-batched"])
    assert any(f.endswith(".eml.lz4") for f in files["archive-eml"])
    assert any(re.fullmatch(r"archive/default/\w+/\d{4}/\d\d/\d\d/[0-9a-f]{32}/[^/]+\.json\.lz4", f)
               for f in files["archive-keys"])
