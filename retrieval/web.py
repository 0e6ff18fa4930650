"""message-archiver serve: a small read-only web page over a destination.

    browser ── GET /            search form (the keys `find` takes) ── AuditIndex.find ──> a page of results,
                                each with its object's verification (re-read, sha256 compared)
            ── GET /message     one message: its index row, its verification, its content:
                                email ── <iframe sandbox src=/message/body> (strict CSP: no script, nothing remote)
                                         (an archived .eml: parsed back with the email package, its HTML part
                                         served the same way, its headers and text shown as text)
                                push, SMS, WhatsApp ── formatted JSON
            ── GET /download    the object's original bytes (a batched message: its frame)
            ── GET /eml         an email as RFC 5322 (archive.eml; an archived .eml as it is)

A message is named by its key, and for a frame of a batched object also by
its offset (?key=sent_batches/...&offset=N): that frame alone is read, with a
byte-range GET (retrieval.content).

Starlette, rendered on the server with Jinja2 (autoescaped: every value from
the archive is text, never markup), no build step and no script of its own.
Every response forbids scripts and remote resources (Content-Security-Policy
`default-src 'none'`); an email's HTML is served on its own URL with
`sandbox` in its policy and shown in an iframe with an empty `sandbox`
attribute, so it cannot run script, submit forms or reach the page around it.
Only archive keys are ever read (archive.audit.parse_key with the bucket's
key templates, or a batched object's key with the offset of one of its
indexed frames): no other path of the bucket can be asked for.

Access: on a loopback address without credentials; on any other address only
with a token (Authorization: Bearer, or ?token= once, kept in an HttpOnly
cookie) or basic-auth credentials, which the command refuses to start without.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import secrets
import urllib.parse
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from archive.audit import parse_batch_key, parse_key, person_digests
from archive.envelope import InvalidMessage
from retrieval import content
from retrieval.bucket import Bucket
from archive.eml import eml
from retrieval.index import AuditIndex, iso_day, when

PAGE_SIZE = 50
_PAGE_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'")
_BODY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox; frame-ancestors 'self'"
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cache-Control": "no-store"}
_SEARCH_FIELDS = ("email", "phone", "push_token", "user_id", "external_id", "campaign_id", "channel", "since",
                  "until")
_COOKIE = "message_archiver_token"


class Refused(ValueError):
    """serve would expose the archive off this machine without credentials."""


def check_exposure(host: str, token: str | None, basic_auth: str | None) -> None:
    if token or basic_auth:
        if basic_auth is not None and ":" not in basic_auth:
            raise Refused("basic-auth credentials are user:password")
        return
    if not _is_loopback(host):
        raise Refused(f"refusing to serve the archive on {host}, which is not a loopback address, without "
                      "credentials: set MESSAGE_ARCHIVER_TOKEN or MESSAGE_ARCHIVER_BASIC_AUTH (user:password)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_TEMPLATES = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, loader=jinja2.DictLoader({
    "base.html": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} · message archive</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f5f6f8}
header{background:#1f2a44;color:#fff;padding:10px 20px}header a{color:#fff;text-decoration:none;font-weight:600}
header span{opacity:.7;margin-left:12px;font-size:12px}
main{padding:16px 20px;max-width:1200px}
form.search{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:8px;background:#fff;
padding:12px;border-radius:6px;border:1px solid #dde1e7}
form.search label{display:flex;flex-direction:column;font-size:12px;color:#5a6375}
form.search input,form.search select{font:inherit;padding:4px 6px;border:1px solid #c6ccd6;border-radius:4px}
button{font:inherit;padding:6px 14px;background:#ff5a36;color:#fff;border:0;border-radius:4px;align-self:end}
table{border-collapse:collapse;width:100%;background:#fff;margin-top:12px;border:1px solid #dde1e7}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{background:#f0f2f5;font-size:12px;color:#5a6375}td.key{font-family:ui-monospace,monospace;font-size:12px;
word-break:break-all}
.ok{color:#137333;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#5a6375}
pre{background:#fff;border:1px solid #dde1e7;padding:12px;overflow:auto;max-height:70vh}
iframe{width:100%;height:70vh;border:1px solid #dde1e7;background:#fff}
nav.pages a,nav.pages span{margin-right:10px}.error{background:#fde8e6;padding:8px 12px;border-radius:4px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;padding:12px;
border:1px solid #dde1e7}dt{color:#5a6375}dd{margin:0;font-family:ui-monospace,monospace;word-break:break-all}
</style></head><body>
<header><a href="/">Message archive</a><span>{{ destination }}</span></header>
<main>{% block main %}{% endblock %}</main></body></html>""",
    "search.html": """{% extends "base.html" %}{% block main %}
<form class="search" method="get" action="/">
{% for name, label in fields %}<label>{{ label }}
{% if name == "channel" %}<select name="channel"><option value="">any</option>
{% for c in channels %}<option value="{{ c }}"{% if query.channel == c %} selected{% endif %}>{{ c }}</option>{% endfor %}
</select>{% else %}<input name="{{ name }}" value="{{ query[name] or '' }}"
{% if name in ('since', 'until') %} type="date"{% endif %}>{% endif %}</label>
{% endfor %}<button type="submit">Search</button></form>
{% if error %}<p class="error">{{ error }}</p>{% endif %}
{% if searched %}
<p class="muted" id="count">{{ count }} message(s){% if count %}, showing {{ first }}–{{ last }}{% endif %}</p>
{% if rows %}<table id="results"><tr><th>sent at (UTC)</th><th>channel</th><th>message id</th>
<th>campaign / step</th><th>bytes</th><th>verified</th><th>key</th></tr>
{% for row in rows %}<tr><td>{{ row.sent }}</td><td>{{ row.channel }}</td>
<td><a href="/message?{{ row.query }}">{{ row.message_id }}</a></td>
<td>{{ row.group }}</td><td>{{ row.bytes }}</td>
<td class="{{ 'ok' if row.status == 'ok' else 'bad' }}">{{ row.status }}</td><td class="key">{{ row.ref }}</td></tr>
{% endfor %}</table>{% endif %}
<nav class="pages">{% if prev_url %}<a href="{{ prev_url }}">← previous</a>{% endif %}
{% if next_url %}<a href="{{ next_url }}">next →</a>{% endif %}</nav>
{% endif %}{% endblock %}""",
    "message.html": """{% extends "base.html" %}{% block main %}
<h2>{{ row.channel }} message {{ row.message_id }}</h2>
<dl><dt>verified</dt><dd class="{{ 'ok' if status == 'ok' else 'bad' }}" id="status">{{ status }}</dd>
<dt>key</dt><dd>{{ row.key }}</dd>{% if row.byte_offset is not none %}<dt>frame</dt>
<dd id="frame">bytes {{ row.byte_offset }} to {{ row.byte_offset + row.bytes }} of the batched object</dd>{% endif %}
<dt>sha256 (index)</dt><dd>{{ row.sha256 }}</dd>
<dt>sha256 (now)</dt><dd>{{ actual or '—' }}</dd><dt>sent at (UTC)</dt><dd>{{ sent }}</dd>
<dt>profile</dt><dd>{{ row.profile }}</dd><dt>campaign</dt><dd>{{ row.campaign_id or row.canvas_step_id or '—' }}</dd>
<dt>bytes</dt><dd>{{ row.bytes }} ({{ row.compression }})</dd></dl>
<p><a href="/download?{{ row.query }}" id="download">download the original {{ 'frame' if row.byte_offset is not none else 'object' }}</a>
{% if can_eml %} · <a href="/eml?{{ row.query }}" id="eml">download as .eml</a>{% endif %}</p>
{% if is_email %}<h3>{{ subject }}</h3>
<p class="muted">From {{ sender }} to {{ to }}</p>
<iframe id="body" sandbox="" referrerpolicy="no-referrer" src="/message/body?{{ row.query }}"
title="the email as sent"></iframe>{% endif %}
<h3>{{ payload_title }}</h3><pre id="payload">{{ payload }}</pre>
{% endblock %}""",
}))


def create_app(targets: list[tuple[str, Bucket]], token: str | None = None,
               basic_auth: str | None = None, default_region: str | None = None) -> Starlette:
    """The web app over these (tenant, bucket) destinations."""
    destination = ", ".join(bucket.url for _, bucket in targets)

    def page(template: str, http_status: int = 200, **values) -> HTMLResponse:
        html = _TEMPLATES.get_template(template).render(destination=destination, **values)
        return HTMLResponse(html, http_status, headers={**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_POLICY})

    async def search(request: Request) -> Response:
        query = {name: (request.query_params.get(name) or "").strip() for name in _SEARCH_FIELDS}
        page_number = _page_number(request.query_params.get("page"))
        values: dict[str, Any] = dict(title="Search", fields=[(n, n.replace("_", " ")) for n in _SEARCH_FIELDS],
                                      channels=("email", "push", "sms", "mms", "whatsapp"), query=query,
                                      error=None, searched=False, rows=[], count=0, first=0, last=0,
                                      prev_url=None, next_url=None)
        if not any(query.values()):
            return page("search.html", **values)
        try:
            person = person_digests(*([query[n]] if query[n] else [] for n in
                                      ("email", "phone", "push_token", "user_id", "external_id")),
                                    default_region=default_region)
            since, until = (_date(query["since"]), _date(query["until"]))
        except (InvalidMessage, ValueError) as exc:
            return page("search.html", http_status=400, **{**values, "error": str(exc)})
        found = []
        for tenant, bucket in targets:
            table = AuditIndex(bucket).find(person or None, campaign_id=query["campaign_id"] or None,
                                            channel=query["channel"] or None, since=since, until=until)
            found.extend((bucket, row) for row in table.to_pylist())
        start = (page_number - 1) * PAGE_SIZE
        shown = found[start:start + PAGE_SIZE]
        statuses = _verify([(bucket, row) for bucket, row in shown])
        rows = [dict(row, sent=when(row["sent_at_ms"]), group=row["campaign_id"] or row["canvas_step_id"] or "",
                     status=statuses[content.ref(row)], ref=content.ref(row), query=_query(row)) for _, row in shown]
        link = lambda n: "/?" + urllib.parse.urlencode({**{k: v for k, v in query.items() if v}, "page": n})  # noqa
        values.update(searched=True, rows=rows, count=len(found), first=start + 1, last=start + len(shown),
                      prev_url=link(page_number - 1) if page_number > 1 else None,
                      next_url=link(page_number + 1) if start + PAGE_SIZE < len(found) else None)
        return page("search.html", **values)

    def located(request: Request) -> tuple[Bucket, dict] | None:
        """The index row the request names: an archive key (a template's, read with the
        bucket's layouts), or a batched object's key and the offset of one of its frames."""
        key = request.query_params.get("key") or ""
        offset_text = request.query_params.get("offset")
        for _, bucket in targets:
            if parse_batch_key(key) is not None:
                if offset_text is None or not offset_text.isascii() or not offset_text.isdigit() \
                        or len(offset_text) > 15:
                    return None
                rows = AuditIndex(bucket).find(key=key, byte_offset=int(offset_text)).to_pylist()
            elif offset_text is None and parse_key(key, bucket.layouts) is not None:
                rows = AuditIndex(bucket).find(key=key).to_pylist()
            else:
                continue
            rows = [row for row in rows if row.get("byte_offset") == (None if offset_text is None else int(offset_text))]
            if rows:
                return bucket, rows[-1]
        return None

    def not_found() -> Response:
        return PlainTextResponse("no such archived message", 404, headers=_COMMON_HEADERS)

    async def message(request: Request) -> Response:
        found = located(request)
        if found is None:
            return not_found()
        bucket, row = found
        row = dict(row, query=_query(row))
        values = dict(row=row, sent=when(row["sent_at_ms"]), title=row["message_id"], subject="", sender="",
                      to="", is_email=False, can_eml=row["channel"] == "email", payload_title="Archived JSON")
        try:
            data = content.read_row(bucket, row)
        except FileNotFoundError:
            return page("message.html", status="missing", actual=None, payload="(the object is not in the store)",
                        **values)
        actual = hashlib.sha256(data).hexdigest()
        status = content.status(row, data)
        try:
            shown = content.read_content(row, data)
        except InvalidMessage as exc:
            values["can_eml"] = False
            return page("message.html", status=status, actual=actual,
                        payload=json.dumps({"unreadable": str(exc)}, indent=2), **values)
        if shown.format == "eml":
            view = content.eml_view(shown.eml)
            values.update(is_email=bool(view["html"]), subject=view["subject"], sender=view["from"], to=view["to"],
                          payload_title="Archived email (RFC 5322, as stored)")
            return page("message.html", status=status, actual=actual,
                        payload=shown.eml.decode("utf-8", "replace"), **values)
        payload = shown.payload
        values.update(is_email=row["channel"] == "email" and isinstance(payload.get("html_body"), str),
                      subject=_text(payload.get("subject")), sender=_text(payload.get("from_address")),
                      to=_text(payload.get("to")))
        return page("message.html", status=status, actual=actual,
                    payload=json.dumps(payload, indent=2, ensure_ascii=False), **values)

    def stored(request: Request, email_only: bool = False) -> tuple[dict, bytes] | None:
        """(index row, bytes) of the archived object (or frame) the request names, or None."""
        found = located(request)
        if found is None or (email_only and found[1]["channel"] != "email"):
            return None
        bucket, row = found
        try:
            return row, content.read_row(bucket, row)
        except FileNotFoundError:
            return None

    def stored_content(request: Request, email_only: bool = False) -> tuple[dict, content.Content] | None:
        found = stored(request, email_only)
        try:
            return None if found is None else (found[0], content.read_content(*found))
        except InvalidMessage:
            return None

    async def body(request: Request) -> Response:
        found = stored_content(request)
        if found is None:
            return not_found()
        row, shown = found
        if shown.format == "eml":
            html = content.eml_view(shown.eml)["html"]
        else:
            html = shown.payload.get("html_body")
        return HTMLResponse(html if isinstance(html, str) else "",
                            headers={**_COMMON_HEADERS, "Content-Security-Policy": _BODY_POLICY})

    async def download(request: Request) -> Response:
        found = stored(request)
        if found is None:
            return not_found()
        row, data = found
        name = row["key"].rsplit("/", 1)[-1]
        if content.is_frame(row):  # 221100-s0000-p0000.jsonl.lz4 -> 221100-s0000-p0000-at-2329.jsonl.lz4
            stem, dot, rest = name.partition(".")
            name = f"{stem}-at-{row['byte_offset']}{dot}{rest}"
        return Response(data, media_type="application/octet-stream", headers={
            **_COMMON_HEADERS, "Content-Disposition": _attachment(name)})

    async def as_eml(request: Request) -> Response:
        found = stored_content(request, email_only=True)
        if found is None:
            return not_found()
        row, shown = found
        data = shown.eml if shown.format == "eml" else eml(shown.payload, row["profile"], row["key"], row["sha256"])
        return Response(data, media_type="message/rfc822",
                        headers={**_COMMON_HEADERS, "Content-Disposition": _attachment(f"{row['message_id']}.eml")})

    app = Starlette(routes=[Route("/", search), Route("/message", message), Route("/message/body", body),
                            Route("/download", download), Route("/eml", as_eml)])
    if token or basic_auth:
        return _Guard(app, token, basic_auth)
    return app


class _Guard:
    """ASGI middleware: every request carries the token (Bearer, cookie, or ?token=
    once, which sets the cookie) or the basic-auth credentials, else 401."""

    def __init__(self, app, token: str | None, basic_auth: str | None):
        self.app, self.token = app, token
        self.basic = base64.b64encode(basic_auth.encode()).decode() if basic_auth else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        header = request.headers.get("authorization", "")
        given = request.query_params.get("token")
        ok = (self.basic is not None and header.startswith("Basic ")
              and secrets.compare_digest(header[6:].strip(), self.basic))
        if self.token is not None and not ok:
            candidates = [header[7:].strip() if header.startswith("Bearer ") else "",
                          request.cookies.get(_COOKIE, ""), given or ""]
            ok = any(c and secrets.compare_digest(c, self.token) for c in candidates)
        if not ok:
            headers = {**_COMMON_HEADERS}
            if self.basic is not None:
                headers["WWW-Authenticate"] = 'Basic realm="message archive", charset="UTF-8"'
            return await PlainTextResponse("credentials required", 401, headers=headers)(scope, receive, send)
        if given and self.token is not None:  # trade the token in the URL for a cookie, and drop it from the URL
            clean = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            response = Response(status_code=303, headers={**_COMMON_HEADERS, "Location": scope["path"] + (
                "?" + urllib.parse.urlencode(clean) if clean else "")})
            response.set_cookie(_COOKIE, self.token, httponly=True, samesite="strict",
                                secure=scope.get("scheme") == "https")
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _verify(pairs: list[tuple[Bucket, dict]]) -> dict[str, str]:
    """Each row's status (by content.ref): its object re-read, or its frame alone."""
    statuses = {}
    for bucket in {id(b): b for b, _ in pairs}.values():
        mine = [row for b, row in pairs if b is bucket]
        expected = {row["key"]: row for row in mine if not content.is_frame(row)}
        framed = {(row["key"], row["byte_offset"], row["bytes"]): row for row in mine if content.is_frame(row)}
        results = list(bucket.read_many(expected, workers=16)) + [
            (framed[item], data) for item, data in bucket.read_ranges(framed, workers=16)]
        for named, data in results:
            row = expected[named] if isinstance(named, str) else named
            if isinstance(data, FileNotFoundError):
                statuses[content.ref(row)] = "missing"
            elif isinstance(data, BaseException):
                statuses[content.ref(row)] = "unreadable"
            else:
                statuses[content.ref(row)] = content.status(row, data)
    return statuses


def _query(row: dict) -> str:
    """The query string that names a row's message: its key, and a frame's offset."""
    named = {"key": row["key"]}
    if row.get("byte_offset") is not None:
        named["offset"] = str(row["byte_offset"])
    return urllib.parse.urlencode(named)


def _page_number(text: str | None) -> int:
    try:
        return max(1, min(int(text or 1), 1_000_000))
    except ValueError:
        return 1


def _date(text: str) -> str | None:
    return iso_day(text) if text else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _attachment(name: str) -> str:
    ascii_name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:200] or "download"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name)}"
