"""Run outputs: each run's outcomes and dead letters are its own, never lost, never clobbered.

- Every output file name carries the run id; no run deletes or overwrites a file it did
  not create, so sequential and concurrent runs into one folder keep everything.
- A sink whose store refuses us keeps its records whole in a local spill folder and the
  job exits 4 with one line per sink, never a traceback.
"""

import base64
import json
import os
import re
import subprocess
import sys
import uuid

import apache_beam as beam
import pytest

from pipeline import run
from pipeline.sinks import WriteJsonLines
from tests.test_pipeline import clevertap_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")


def run_inputs(folder, prefix, valid=60, invalid=7):
    """`valid` distinct messages and `invalid` distinct bad lines (one per run prefix)."""
    records = clevertap_records()
    lines = [json.dumps({**records[i % len(records)], "message_id": f"{prefix}-{i}"}).encode()
             for i in range(valid)]
    bad = [f'{{"channel": "fax", "to": "x", "n": "{prefix}-{i}"}}'.encode() for i in range(invalid)]
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{prefix}.jsonl")
    with open(path, "wb") as handle:
        handle.write(b"\n".join(lines + bad) + b"\n")
    return path, lines, bad


def jsonl_records(folder, prefix=""):
    """Every record of the visible .jsonl files of a local folder (not the temp folders)."""
    found = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        path = os.path.join(folder, name)
        if name.startswith(prefix) and name.endswith(".jsonl") and os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                found += [json.loads(line) for line in handle]
    return found


def dead_letter_inputs(records):
    return sorted(r["input"].encode() if "input" in r else base64.b64decode(r["input_base64"])
                  for r in records)


def job(argv, cwd, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "pipeline.run", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT}, **kwargs)


def common(tmp_path):
    return ["--destination", str(tmp_path / "archive"), "--outcomes", str(tmp_path / "outcomes"),
            "--retry_base_delay", "0.001"]


def test_sequential_runs_into_one_destination_keep_every_outcome_and_dead_letter(tmp_path):
    first, first_lines, first_bad = run_inputs(tmp_path / "in", "first")
    second, second_lines, second_bad = run_inputs(tmp_path / "in", "second")
    assert run.main(["--input", first, *common(tmp_path), "--summary", "false"]) == 0
    assert run.main(["--input", second, *common(tmp_path), "--summary", "false"]) == 0
    outcomes = jsonl_records(tmp_path / "outcomes")
    assert len(outcomes) == len(first_lines + first_bad + second_lines + second_bad)
    assert sorted(o["message_id"] for o in outcomes if o["status"] == "ARCHIVED") == sorted(
        f"{p}-{i}" for p in ("first", "second") for i in range(len(first_lines)))
    dead = jsonl_records(tmp_path / "archive" / "dead_letters")
    assert dead_letter_inputs(dead) == sorted(first_bad + second_bad)
    names = os.listdir(tmp_path / "outcomes")
    run_ids = {re.match(r"outcomes-(.+)-\d{5}-of-\d{5}\.jsonl$", n).group(1) for n in names}
    assert len(run_ids) == 2 and all(RUN_ID.match(r) for r in run_ids), names


def test_concurrent_runs_into_one_destination_keep_every_outcome_and_dead_letter(tmp_path):
    inputs = [run_inputs(tmp_path / "in", f"run{n}", valid=1500, invalid=150) for n in range(2)]
    jobs = [job(["--input", path, *common(tmp_path), "--direct_num_workers", "2"], cwd=tmp_path)
            for path, _, _ in inputs]
    results = [(j.wait(300), *j.communicate()) for j in jobs]
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    outcomes = jsonl_records(tmp_path / "outcomes")
    expected = sum(len(lines) + len(bad) for _, lines, bad in inputs)
    assert len(outcomes) == expected
    archived = sorted(o["message_id"] for o in outcomes if o["status"] == "ARCHIVED")
    assert archived == sorted(f"run{n}-{i}" for n in range(2) for i in range(1500))
    invalid = [o for o in outcomes if o["status"] == "INVALID"]
    assert len(invalid) == 300
    dead = jsonl_records(tmp_path / "archive" / "dead_letters")
    assert dead_letter_inputs(dead) == sorted(b for _, _, bad in inputs for b in bad)
    # each summary names its run, and that run's files carry the id
    for _, out, _ in results:
        [run_id] = re.findall(r"^run id\s+(\S+)$", out, re.M)
        assert RUN_ID.match(run_id)
        assert any(n.startswith(f"outcomes-{run_id}-") for n in os.listdir(tmp_path / "outcomes"))
        assert any(n.startswith(f"dead-letters-{run_id}-")
                   for n in os.listdir(tmp_path / "archive" / "dead_letters"))
    leftovers = [n for n in os.listdir(tmp_path / "outcomes") if n.startswith(".temp")]
    assert leftovers == []


def test_a_reused_run_id_is_refused_and_the_earlier_run_is_untouched(tmp_path):
    path, lines, bad = run_inputs(tmp_path / "in", "once")
    argv = ["--input", path, *common(tmp_path), "--summary", "false", "--run_id", "nightly-2026-12-02"]
    assert run.main(argv) == 0
    before = {n: (tmp_path / "outcomes" / n).read_bytes() for n in os.listdir(tmp_path / "outcomes")}
    assert all(n.startswith("outcomes-nightly-2026-12-02-") for n in before)
    assert run.main(argv) == 2
    after = {n: (tmp_path / "outcomes" / n).read_bytes() for n in os.listdir(tmp_path / "outcomes")}
    assert after == before


@pytest.mark.parametrize("existing", [
    pytest.param(["outcomes-r1-00000-of-00001.jsonl"], id="final-name-taken"),
    pytest.param(["outcomes-r1-00000-of-00001.jsonl", "outcomes-r1-x-00000-of-00001.jsonl"], id="several-taken"),
    pytest.param(["outcomes-r0-00000-of-00001.jsonl"], id="another-run"),
])
def test_the_sink_never_overwrites_a_file_it_did_not_create(test_pipeline, tmp_path, existing):
    folder = tmp_path / "out"
    folder.mkdir()
    for name in existing:
        (folder / name).write_text("someone else's\n")
    with test_pipeline() as p:
        p | beam.Create(['{"n":1}', '{"n":2}']) | WriteJsonLines(str(folder), "outcomes", run_id="r1")
    for name in existing:
        assert (folder / name).read_text() == "someone else's\n"
    ours = [n for n in os.listdir(folder) if n not in existing and not n.startswith(".")]
    assert len(ours) == 1 and ours[0].startswith("outcomes-r1")
    assert sorted((folder / ours[0]).read_text().splitlines()) == ['{"n":1}', '{"n":2}']


class Described:
    """A record that serializes itself, as Outcome and DeadLetter do."""

    def __init__(self, text):
        self.text = text

    def to_json(self):
        return self.text


@pytest.mark.parametrize("text, expected", [
    pytest.param('{"message_id":"m-1"}', {"message_id": "m-1"}, id="plain"),
    pytest.param('{"message_id":"a\ud800"}', {"message_id": "a\\ud800"}, id="lone-surrogate"),
    pytest.param('{"reason":"\udfff\ud800 x","n":[1,"\udc80"]}', {"reason": "\\udfff\\ud800 x", "n": [1, "\\udc80"]},
                 id="several-surrogates"),
    pytest.param('not json \ud800', "not json \\ud800", id="not-json-with-surrogate"),
])
def test_batch_sink_lines_are_strict_json_in_utf8(test_pipeline, tmp_path, text, expected):
    with test_pipeline() as p:
        p | beam.Create([Described(text)]) | WriteJsonLines(str(tmp_path / "o"), "outcomes", run_id="r2")
    [name] = os.listdir(tmp_path / "o")
    [line] = (tmp_path / "o" / name).read_bytes().decode("utf-8").splitlines()
    assert json.loads(line) == expected


# --- a store that refuses us: the outcomes and dead letters are spilled locally -------------

SPILL_CASES = [
    # (outcomes on the refused bucket?, dead letters on it?, --spill_dir given?)
    pytest.param(True, True, True, id="outcomes-and-dead-letters-refused"),
    pytest.param(False, True, True, id="only-dead-letters-refused"),
    pytest.param(True, False, True, id="only-outcomes-refused"),
    pytest.param(True, True, False, id="default-spill-folder"),
]


@pytest.mark.parametrize("outcomes_refused, dead_letters_refused, spill_given", SPILL_CASES)
def test_a_refused_store_costs_no_outcome_and_no_dead_letter(s3_auth_server, tmp_path, outcomes_refused,
                                                             dead_letters_refused, spill_given):
    bucket = s3_auth_server.create_bucket(f"refused-{uuid.uuid4().hex[:8]}")
    options = s3_auth_server.storage_options()
    options["secret"] = "wrong-secret-" + uuid.uuid4().hex
    path, lines, bad = run_inputs(tmp_path / "in", "refused", valid=12, invalid=5)
    run_id = "spill-" + uuid.uuid4().hex[:6]
    argv = ["--input", path, "--destination", f"s3://{bucket}", "--storage_options", json.dumps(options),
            "--retry_base_delay", "0.001", "--retry_max_delay", "0.01", "--run_id", run_id,
            "--outcomes", f"s3://{bucket}/outcomes" if outcomes_refused else str(tmp_path / "outcomes")]
    if not dead_letters_refused:
        argv += ["--dead_letters", str(tmp_path / "dead")]
    if spill_given:
        argv += ["--spill_dir", str(tmp_path / "spill")]
    process = job(argv, cwd=tmp_path)
    out, err = process.communicate(timeout=300)
    assert process.returncode == run.EXIT_SINK_SPILLED, err[-3000:]
    assert "Traceback" not in err
    assert options["secret"] not in err + out and options["key"] not in err + out
    spill = (tmp_path / "spill" if spill_given else tmp_path / "archive-spill") / run_id
    outcomes = jsonl_records(spill / "outcomes" if outcomes_refused else tmp_path / "outcomes")
    assert len(outcomes) == len(lines) + len(bad)
    assert {(o["status"], o.get("error_class")) for o in outcomes} == {("FAILED", "auth"), ("INVALID", None)}
    dead = jsonl_records(spill / "dead-letters" if dead_letters_refused else tmp_path / "dead")
    assert dead_letter_inputs(r for r in dead if r["status"] == "INVALID") == sorted(bad)
    # the FAILED messages are kept whole too, for the re-drive
    assert dead_letter_inputs(r for r in dead if r["status"] == "FAILED") == sorted(lines)
    sink_lines = [line for line in err.splitlines() if line.startswith("error:")]
    refused = [n for n, r in (("outcomes", outcomes_refused), ("dead-letters", dead_letters_refused)) if r]
    assert len(sink_lines) == len(refused), err[-3000:]
    for name, line in zip(refused, sink_lines):
        assert name in line and "auth" in line and str(spill / name) in line, line
    # nothing was left to spill where the sink could write
    for name, was_refused in (("outcomes", outcomes_refused), ("dead-letters", dead_letters_refused)):
        if not was_refused:
            assert not (spill / name).exists()


# --- the pure parts -------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    pytest.param({"a": "b"}, '{"a":"b"}', id="plain"),
    pytest.param({"a": "é\x00"}, '{"a":"é\\u0000"}', id="nul-and-accent"),
    pytest.param({"a": "x\ud800"}, '{"a":"x\\\\ud800"}', id="lone-surrogate-value"),
    pytest.param({"k\udfff": 1}, '{"k\\\\udfff":1}', id="lone-surrogate-key"),
    pytest.param({"n": float("nan"), "i": float("inf"), "j": float("-inf")},
                 '{"n":"NaN","i":"Infinity","j":"-Infinity"}', id="non-finite"),
    pytest.param({"b": b"\xff\x00"}, '{"b":"/wA="}', id="bytes"),
    pytest.param({"t": (1, "\ud800")}, '{"t":[1,"\\\\ud800"]}', id="tuple"),
    pytest.param({"o": object}, None, id="other-type"),
])
def test_strict_json_is_total(value, expected):
    from pipeline.sinks import strict_json

    text = strict_json(value)
    text.encode("utf-8")
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))
    if expected is not None:
        assert text == expected


def test_a_new_run_id_is_the_utc_time_and_a_suffix():
    from pipeline.options import check_run_id, new_run_id

    assert new_run_id(1796189400, "3f9a1c") == "20261202T053000Z-3f9a1c"
    assert RUN_ID.match(new_run_id()) and new_run_id() != new_run_id()
    assert check_run_id(new_run_id())


@pytest.mark.parametrize("counters, refused", [
    pytest.param({}, [], id="none"),
    pytest.param({"outcomes.spilled_records": 0}, [], id="zero"),
    pytest.param({"dead-letters.refused.auth.PermissionError": 2, "dead-letters.spilled_records": 5,
                  "outcomes.refused.auth.PermissionError": 1, "outcomes.spilled_records": 17,
                  "outcomes.refused.connection.ConnectionError": 1},
                 [("outcomes", 17, ("auth: PermissionError", "connection: ConnectionError")),
                  ("dead-letters", 5, ("auth: PermissionError",))], id="both"),
    pytest.param({"dead-letters.refused.auth.PermissionError": 1}, [("dead-letters", 0, ("auth: PermissionError",))],
                 id="refused-with-nothing-to-keep"),
])
def test_refused_sinks_from_the_counters(counters, refused):
    from pipeline.summary import refused_sinks

    assert [tuple(r) for r in refused_sinks(counters)] == refused


@pytest.mark.parametrize("counters, shown, hidden", [
    pytest.param({"sms.ARCHIVED": 2, "blank_lines": 3}, ["blank lines     3 (skipped)", "run id          r-1"], [],
                 id="blank-lines"),
    pytest.param({"sms.ARCHIVED": 2}, ["run id          r-1"], ["blank lines"], id="no-blank-lines"),
])
def test_the_summary_shows_the_run_id_and_blank_lines(counters, shown, hidden):
    from pipeline.summary import render

    text = render(counters, destination="d", outcomes="o", dead_letters="dl", seconds=1.0, run_id="r-1")
    assert all(s in text.splitlines() for s in shown) and not any(h in text for h in hidden)
    assert "    2" in text.split("sms", 1)[1].splitlines()[0]  # blank lines are no channel
