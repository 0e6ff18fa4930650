"""The end-to-end fuzz command at CI size, and proof that its checker catches each broken promise.

    python -m bench fuzz --count 3000 --profile both ─> zero violations, every class and outcome seen
    one small fuzz run ─ one promise broken on purpose (a table row) ─ bench.fuzz.check ─> that violation
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import lz4.frame
import pytest

from bench import fuzz
from tests.hostile import MUTATIONS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_small_fuzz_run_of_both_profiles_breaks_no_promise(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "fuzz", "--count", "3000", "--seed", "7", "--profile", "both",
         "--huge", "3", "--work", str(tmp_path), "--out", str(tmp_path / "results")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=300)
    report = json.loads((tmp_path / "results" / "fuzz.json").read_text())
    assert completed.returncode == 0 and report["violation_count"] == 0, completed.stdout[-4000:]
    assert set(report["runs"]) == {"clevertap", "braze"}
    for profile, result in report["runs"].items():
        assert result["exit_code"] == fuzz.EXIT_FAILED_MESSAGES, profile  # globex and initech FAIL
        # the run exercised what it claims: every hostile class, every outcome
        assert set(result["classes"]) == set(MUTATIONS) | {"multi_megabyte"}, profile
        assert all(result["outcomes"][s] > 0 for s in (*fuzz.STATUSES, "blank line")), result["outcomes"]
    assert "violations: none" in completed.stdout
    assert os.listdir(tmp_path) == ["results"]  # the work folder is removed


# --- the checker catches what it claims to ---------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One small clevertap run, its outputs saved so each case starts from them."""
    work = str(tmp_path_factory.mktemp("fuzz-check"))
    classes = fuzz.write_corpus(os.path.join(work, "input"), seed=3, count=400, files=1, huge=0)
    [path] = classes
    with open(path, "ab") as handle:  # an empty line and a CRLF one, whatever the seed drew
        handle.write(b'\n{"channel": "sms"}\r\n')
    classes[path] += ["blank", "crlf"]
    job = fuzz.Job("clevertap", work, sorted(classes), run_id="check")
    job.prepare()
    watched = (work, job.cwd, job.tmp)
    before = fuzz.snapshot(*watched)
    exit_code, stdout, stderr, _ = job.run()
    saved = str(tmp_path_factory.mktemp("saved") / "out")
    shutil.copytree(os.path.join(work, "out"), saved)
    return job, classes, exit_code, stdout, stderr, before, watched, saved


def _lines(folder):
    [path] = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".jsonl")]
    with open(path, "rb") as handle:
        return path, [json.loads(line) for line in handle]


def _rewrite(path, records):
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _first(records, status, where=lambda r: True):
    return next(r for r in records if r["status"] == status and where(r))


def _object_path(outcome):
    url = outcome["url"]
    return url[len("file://"):] if url.startswith("file://") else url


def _replace_object(job, data: bytes):
    """An ARCHIVED object's bytes replaced, its outcome's sha256 and size agreeing:
    only the content check can tell."""
    path, outcomes = _lines(job.outcomes)
    outcome = _first(outcomes, "ARCHIVED", lambda r: r["url"].endswith(".lz4"))
    compressed = lz4.frame.compress(data)
    with open(_object_path(outcome), "wb") as handle:
        handle.write(compressed)
    outcome.update(sha256=hashlib.sha256(compressed).hexdigest(), bytes=len(compressed))
    _rewrite(path, outcomes)


def corrupt_object(job):
    outcome = _first(_lines(job.outcomes)[1], "ARCHIVED")
    with open(_object_path(outcome), "r+b") as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xFF]))


def drop_outcome(job):
    path, outcomes = _lines(job.outcomes)
    outcomes.remove(_first(outcomes, "INVALID"))
    _rewrite(path, outcomes)


def duplicate_outcome(job):
    path, outcomes = _lines(job.outcomes)
    _rewrite(path, outcomes + [_first(outcomes, "SKIPPED")])


def non_strict_outcome_line(job):
    path, _ = _lines(job.outcomes)
    with open(path, "ab") as handle:
        handle.write(b'{"status": "ARCHIVED", "bytes": NaN}\n')


def drop_dead_letter(job, status):
    path, letters = _lines(job.dead_letters)
    letters.remove(_first(letters, status))
    _rewrite(path, letters)


def strip_a_dead_letters_cr(job):
    """The CRLF case: a reader that removed the CR would keep other bytes than the line's."""
    path, letters = _lines(job.dead_letters)
    letter = _first(letters, "INVALID", lambda r: r.get("input", "").endswith("\r"))
    letter["input"] = letter["input"][:-1]
    _rewrite(path, letters)


def dead_letter_for_an_archived_line(job):
    path, letters = _lines(job.dead_letters)
    archived = _first(_lines(job.outcomes)[1], "ARCHIVED")
    _rewrite(path, letters + [{"status": "INVALID", "input_sha256": "0" * 64, "reason": "x",
                               "source": archived["source"], "input": "{}"}])


def orphan_object(job):
    folder = os.path.join(job.destinations["default"], "sent_messages", "Sms", "202407", "1", "0" * 32)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "stray.json.lz4"), "wb") as handle:
        handle.write(lz4.frame.compress(b"{}"))


def key_off_the_layout(job):
    path, outcomes = _lines(job.outcomes)
    outcome = _first(outcomes, "ARCHIVED")
    old = _object_path(outcome)
    new = os.path.join(job.destinations["default"], "sent_messages", "..", "elsewhere.json.lz4")
    os.rename(old, new)
    outcome["url"] = new
    outcome["tenant"] = "default"
    _rewrite(path, outcomes)


def file_in_the_working_directory(job):
    with open(os.path.join(job.cwd, "archive-spill"), "w") as handle:
        handle.write("x")


def file_left_in_tmpdir(job):
    with open(os.path.join(job.tmp, "staged.jsonl"), "w") as handle:
        handle.write("x")


def temp_folder_left_in_outcomes(job):
    os.makedirs(os.path.join(job.outcomes, ".temp-outcomes-check-1"), exist_ok=True)
    with open(os.path.join(job.outcomes, ".temp-outcomes-check-1", "part.jsonl"), "w") as handle:
        handle.write("{}\n")


def input_changed(job):
    with open(job.inputs[0], "ab") as handle:
        handle.write(b"")
    os.utime(job.inputs[0], ns=(1, 1))


BROKEN_PROMISES = [
    pytest.param(corrupt_object, None, "object's sha256 is not the outcome's", id="object-bytes-changed"),
    pytest.param(lambda job: _replace_object(job, b'{"a": NaN}'), None,
                 "object is not strict JSON once decompressed", id="object-with-nan"),
    pytest.param(lambda job: _replace_object(job, b'{"a": 1, "a": 2}'), None,
                 "object is not strict JSON once decompressed", id="object-with-duplicate-keys"),
    pytest.param(lambda job: _replace_object(job, b'{"a": "\\ud800"}'), None,
                 "object is not strict JSON once decompressed", id="object-with-lone-surrogate"),
    pytest.param(lambda job: _replace_object(job, b'\xef\xbb\xbf{"a": 1}'), None,
                 "object is not strict JSON once decompressed", id="object-with-bom"),
    pytest.param(lambda job: _replace_object(job, b"[1]"), None,
                 "object is not strict JSON once decompressed", id="object-not-an-object"),
    pytest.param(drop_outcome, None, "input line without an outcome", id="missing-outcome"),
    pytest.param(duplicate_outcome, None, "more than one outcome for a line", id="two-outcomes"),
    pytest.param(non_strict_outcome_line, None, "outcome line is not strict JSON", id="outcome-with-nan"),
    pytest.param(lambda job: drop_dead_letter(job, "INVALID"), None,
                 "INVALID line without exactly one dead letter", id="missing-invalid-dead-letter"),
    pytest.param(lambda job: drop_dead_letter(job, "FAILED"), None,
                 "FAILED line without exactly one dead letter", id="missing-failed-dead-letter"),
    pytest.param(strip_a_dead_letters_cr, None, "dead letter's bytes are not the input line's",
                 id="dead-letter-lost-its-cr"),
    pytest.param(dead_letter_for_an_archived_line, None, "dead letter for a line neither INVALID nor FAILED",
                 id="dead-letter-for-archived"),
    pytest.param(orphan_object, None, "object without an ARCHIVED outcome", id="orphan-object"),
    pytest.param(key_off_the_layout, None, "key does not match the profile's layout", id="key-off-layout"),
    pytest.param(file_in_the_working_directory, None, "file written outside the output folders", id="cwd-file"),
    pytest.param(file_left_in_tmpdir, None, "file written outside the output folders", id="tmpdir-file"),
    pytest.param(input_changed, None, "file changed outside the output folders", id="input-touched"),
    pytest.param(temp_folder_left_in_outcomes, None, "stray file in an output folder", id="temp-left"),
    pytest.param(None, {"exit_code": 0}, "exit status", id="exit-0-with-failed"),
    pytest.param(None, {"exit_code": 4}, "exit status", id="exit-4-without-spill"),
    pytest.param(None, {"stdout": ""}, "blank lines not counted", id="blank-lines-not-counted"),
    pytest.param(None, {"stderr": "Traceback (most recent call last):\n  File x\nKeyError: 1\n"},
                 "a traceback on stderr", id="traceback"),
]


@pytest.mark.parametrize("breaks, given, violation", BROKEN_PROMISES)
def test_the_checker_catches_each_broken_promise(small_run, breaks, given, violation):
    job, classes, exit_code, stdout, stderr, before, watched, saved = small_run
    shutil.rmtree(os.path.join(job.work, "out"))
    shutil.copytree(saved, os.path.join(job.work, "out"))
    for folder in (job.cwd, job.tmp):
        shutil.rmtree(folder)
        os.makedirs(folder)
    intact = fuzz.check(job, classes, exit_code, stdout, before, fuzz.snapshot(*watched), stderr)
    assert intact.violations == {}, (intact.violations, stderr[-2000:])
    stat = os.stat(job.inputs[0])
    try:
        if breaks is not None:
            breaks(job)
        given = {"exit_code": exit_code, "stdout": stdout, "stderr": stderr, **(given or {})}
        found = fuzz.check(job, classes, given["exit_code"], given["stdout"], before, fuzz.snapshot(*watched),
                           given["stderr"])
    finally:
        os.utime(job.inputs[0], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert violation in found.violations, found.violations
    assert found.total_violations >= 1
