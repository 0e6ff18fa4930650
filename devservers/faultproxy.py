"""A real HTTP reverse proxy that adds latency and answers chosen requests with errors.

Put it in front of any emulator (none of them injects faults) and point the client at
`proxy.url` instead of the server's:

    with FaultProxy(s3.endpoint_url) as proxy:
        proxy.slow_down(count=2, method="PUT")  # next two PUTs: 503 SlowDown
        proxy.set_latency(0.05)                 # every request: 50 ms first
        ...                                     # client on proxy.url
        proxy.count("PUT", r"^/bucket/")        # requests seen

Everything not answered by a rule is forwarded as the client sent it: method, raw path
and query (not re-encoded), headers including Host (so SigV4 and SharedKey signatures
stay valid), body streamed, response streamed back with its status and headers.
Only hop-by-hop headers are dropped, and `Expect: 100-continue` is answered here.
A request is counted before its client can see the end of the answer, so counts read
right after a call returns are complete.

It runs on its own asyncio loop in a daemon thread, on a free 127.0.0.1 port; the
control methods are thread-safe and meant to be called from the test.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import re
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, Mapping
from xml.sax.saxutils import escape

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from devservers._process import HOST

# RFC 9110 7.6.1, plus Expect, which aiohttp's server answers itself.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "proxy-connection", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
    "expect"})
_MAX_RECORDS = 10_000


def s3_error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message><RequestId>devservers-faultproxy"
            f"</RequestId></Error>").encode()


def azure_error_body(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error>").encode()


def gcs_error_body(status: int, reason: str, message: str) -> bytes:
    return json.dumps({"error": {"code": status, "message": message, "errors": [
        {"domain": "global", "reason": reason, "message": message}]}}).encode()


@dataclass
class Rule:
    """Matches requests by method and regexes on the raw path and query string.

    `remaining` is how many more requests it takes (None: all). A matched request waits
    `delay` seconds, then gets `status`/`body`/`headers`, or is forwarded if status is None.
    """

    status: int | None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    remaining: int | None = 1
    method: str | None = None
    path: re.Pattern[str] | None = None
    query: re.Pattern[str] | None = None
    delay: float = 0.0
    hits: int = 0

    def matches(self, method: str, path: str, query: str) -> bool:
        return ((self.remaining is None or self.remaining > 0)
                and (self.method is None or self.method == method)
                and (self.path is None or self.path.search(path) is not None)
                and (self.query is None or self.query.search(query) is not None))


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int
    faulted: bool
    seconds: float
    headers: Mapping[str, str] = field(default_factory=dict)   # as the client sent them


class FaultProxy:
    def __init__(self, upstream_url: str, *, host: str = HOST, port: int = 0):
        self.upstream_url = upstream_url.rstrip("/")
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._latency = 0.0
        self._counts: Counter[tuple[str, str]] = Counter()
        self._records: deque[RequestRecord] = deque(maxlen=_MAX_RECORDS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    endpoint_url = url

    # -- control ---------------------------------------------------------------------

    def set_latency(self, seconds: float) -> None:
        """Wait this long before handling each request (forwarded or faulted)."""
        with self._lock:
            self._latency = seconds

    def fail_next(self, count: int | None = 1, status: int = 503, body: bytes = b"",
                  headers: Mapping[str, str] | None = None, *, method: str | None = None,
                  path: str | None = None, query: str | None = None,
                  delay: float = 0.0) -> Rule:
        """Answer the next `count` matching requests (None: all) with this response."""
        return self._add(Rule(status=status, body=body, headers=dict(headers or {}),
                              remaining=count, method=method, path=_compile(path),
                              query=_compile(query), delay=delay))

    def delay_next(self, seconds: float, count: int | None = 1, *, method: str | None = None,
                   path: str | None = None, query: str | None = None) -> Rule:
        """Forward the next `count` matching requests only after `seconds`."""
        return self._add(Rule(status=None, remaining=count, method=method,
                              path=_compile(path), query=_compile(query), delay=seconds))

    def slow_down(self, count: int | None = 1, **match) -> Rule:
        """S3 throttling: 503 with the SlowDown error body."""
        return self.s3_error(503, "SlowDown", "Please reduce your request rate.",
                             count=count, **match)

    def s3_error(self, status: int, code: str, message: str, count: int | None = 1,
                 **match) -> Rule:
        return self.fail_next(count, status, s3_error_body(code, message),
                              {"Content-Type": "application/xml"}, **match)

    def azure_error(self, status: int, code: str, message: str, count: int | None = 1,
                    **match) -> Rule:
        return self.fail_next(count, status, azure_error_body(code, message),
                              {"Content-Type": "application/xml", "x-ms-error-code": code},
                              **match)

    def gcs_error(self, status: int, reason: str, message: str, count: int | None = 1,
                  **match) -> Rule:
        return self.fail_next(count, status, gcs_error_body(status, reason, message),
                              {"Content-Type": "application/json; charset=UTF-8"}, **match)

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def reset(self) -> None:
        """No rules, no latency, no counts."""
        with self._lock:
            self._rules.clear()
            self._latency = 0.0
            self._counts.clear()
            self._records.clear()

    def counts(self) -> Counter[tuple[str, str]]:
        """Requests seen (forwarded or faulted), by (method, path without query)."""
        with self._lock:
            return Counter(self._counts)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        pattern = _compile(path)
        return sum(n for (m, p), n in self.counts().items()
                   if (method is None or m == method)
                   and (pattern is None or pattern.search(p)))

    @property
    def requests(self) -> list[RequestRecord]:
        """The last requests seen, oldest first (at most 10,000)."""
        with self._lock:
            return list(self._records)

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _take(self, method: str, path: str, query: str) -> tuple[float, Rule | None]:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, query):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return self._latency, rule
            return self._latency, None

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._counts[(record.method, record.path)] += 1
            self._records.append(record)

    # -- life ------------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"faultproxy->{self.upstream_url}")
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        try:
            self.port = future.result(timeout=10)
        except BaseException:
            self.stop()
            raise
        _live.add(self)
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        _live.discard(self)
        try:
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    async def _serve(self) -> int:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        return self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        raw_path, _, query = request.raw_path.partition("?")
        latency, rule = self._take(request.method, raw_path, query)
        if latency:
            await asyncio.sleep(latency)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        faulted = rule is not None and rule.status is not None
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self._record(RequestRecord(request.method, raw_path, query, status, faulted,
                                           time.monotonic() - started, dict(request.headers)))

        try:
            if faulted:
                # Read the body first, so a keep-alive connection stays in step.
                async for _ in request.content.iter_any():
                    pass
                record(rule.status)
                return web.Response(status=rule.status, body=rule.body, headers=rule.headers)
            return await self._forward(request, record)
        finally:
            record(599)  # only if nothing was: the client went away before an answer

    async def _forward(self, request: web.Request,
                       record: Callable[[int], None]) -> web.StreamResponse:
        assert self._session is not None
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() not in _HOP_BY_HOP)
        data = request.content if request.body_exists else None
        url = URL(self.upstream_url + request.raw_path, encoded=True)
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=data, allow_redirects=False)
        except (aiohttp.ClientError, OSError) as exc:
            record(502)
            return web.Response(status=502, text=f"faultproxy: upstream failed: {exc!r}")
        async with upstream:
            response = web.StreamResponse(
                status=upstream.status, reason=upstream.reason,
                headers=CIMultiDict((k, v) for k, v in upstream.headers.items()
                                    if k.lower() not in _HOP_BY_HOP))
            try:
                # The last chunk is held back until the request is recorded, so that a
                # test reading the counts right after its call returns never races us.
                held = b""
                async for chunk in upstream.content.iter_any():
                    if not response.prepared:
                        await response.prepare(request)
                    if held:
                        await response.write(held)
                    held = chunk
                record(upstream.status)
                if not response.prepared:
                    await response.prepare(request)
                if held:
                    await response.write(held)
                await response.write_eof()
            except ConnectionResetError:
                pass  # the client went away mid-answer: nobody left to tell
        return response


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern is not None else None


_live: set[FaultProxy] = set()


@atexit.register
def _stop_all() -> None:
    for proxy in list(_live):
        try:
            proxy.stop()
        except Exception:  # exiting anyway; a stuck loop thread is a daemon
            pass
