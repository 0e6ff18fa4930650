"""Shopify's toxiproxy: a real TCP proxy whose faults (latency, ...) are set over HTTP.

``install()`` builds toxiproxy's server with ``go install`` into
``<cache>/bin/``; ``start()`` runs it on a free port. The client here speaks
its HTTP API with urllib:

    with toxiproxy.start() as toxi:
        s3 = toxi.create_proxy("s3", upstream="127.0.0.1:9000")
        s3.add_latency(20)                 # every response arrives 20 ms later
        ... endpoint_url=f"http://{s3.listen}" ...
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from devservers._process import (
    CACHE_ROOT, HOST, DevServerError, RunningServer, ServerProcess, go_install, http_probe, launch)

TOXIPROXY_VERSION = "v2.12.0"
_MODULE = "github.com/Shopify/toxiproxy/v2"
# Loopback API: never through an http_proxy from the environment.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def install(version: str = TOXIPROXY_VERSION) -> Path:
    """``go install`` toxiproxy's server once; return the binary's path."""
    binary = CACHE_ROOT / "bin" / "toxiproxy-server"
    go_install("toxiproxy", f"{_MODULE}/cmd/server", version, binary)
    return binary


class Proxy:
    """One proxy: clients connect to ``listen`` and reach ``upstream`` through the toxics."""

    def __init__(self, server: "Toxiproxy", name: str, listen: str, upstream: str):
        self._server = server
        self.name = name
        self.listen = listen
        self.upstream = upstream

    def __repr__(self) -> str:
        return f"Proxy(name={self.name!r}, listen={self.listen!r}, upstream={self.upstream!r})"

    @property
    def host(self) -> str:
        return self.listen.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.listen.rsplit(":", 1)[1])

    def add_latency(self, latency_ms: int, jitter_ms: int = 0, stream: str = "downstream",
                    name: str | None = None, toxicity: float = 1.0) -> str:
        """Delay data by ``latency_ms`` (+/- ``jitter_ms``); return the toxic's name.

        ``downstream`` delays what the upstream sends back (a response);
        ``upstream`` what the client sends. Both add up on a round trip.
        """
        if stream not in ("upstream", "downstream"):
            raise ValueError(f"stream must be 'upstream' or 'downstream', not {stream!r}")
        toxic = {"name": name or f"latency_{stream}", "type": "latency", "stream": stream,
                 "toxicity": toxicity, "attributes": {"latency": latency_ms, "jitter": jitter_ms}}
        return self._server._call("POST", f"/proxies/{self.name}/toxics", toxic)["name"]

    def add_reset_peer(self, timeout_ms: int = 0, stream: str = "downstream",
                       name: str | None = None, toxicity: float = 1.0) -> str:
        """Reset connections (TCP RST: the client sees ECONNRESET) once data flows,
        after ``timeout_ms``. ``downstream``: as the response starts, after the
        upstream has handled the request; ``upstream``: as the request arrives.
        ``toxicity`` is the share of connections hit, drawn per connection when
        it opens or the toxic is added."""
        return self._add_toxic("reset_peer", {"timeout": timeout_ms}, stream, name, toxicity)

    def add_timeout(self, timeout_ms: int = 0, stream: str = "upstream",
                    name: str | None = None, toxicity: float = 1.0) -> str:
        """Let no data through; close the connection after ``timeout_ms``, or with 0
        never: a half-open connection, accepted but never answered, until the
        toxic is removed (data held meanwhile may then go on)."""
        return self._add_toxic("timeout", {"timeout": timeout_ms}, stream, name, toxicity)

    def set_enabled(self, enabled: bool) -> None:
        """Disabled, the proxy closes its listener and every connection: clients
        are refused. Enabled again, it listens on the same address."""
        self._server._call("POST", f"/proxies/{self.name}", {"enabled": enabled})

    def _add_toxic(self, kind: str, attributes: dict, stream: str, name: str | None,
                   toxicity: float) -> str:
        if stream not in ("upstream", "downstream"):
            raise ValueError(f"stream must be 'upstream' or 'downstream', not {stream!r}")
        toxic = {"name": name or f"{kind}_{stream}", "type": kind, "stream": stream,
                 "toxicity": toxicity, "attributes": attributes}
        return self._server._call("POST", f"/proxies/{self.name}/toxics", toxic)["name"]

    def toxics(self) -> list[dict]:
        return self._server._call("GET", f"/proxies/{self.name}/toxics")

    def remove_toxic(self, name: str) -> None:
        self._server._call("DELETE", f"/proxies/{self.name}/toxics/{name}")

    def remove_toxics(self) -> None:
        for toxic in self.toxics():
            self.remove_toxic(toxic["name"])

    def delete(self) -> None:
        self._server._call("DELETE", f"/proxies/{self.name}")


class Toxiproxy(RunningServer):
    """A running toxiproxy server and a client for its HTTP API."""

    def __init__(self, process: ServerProcess, port: int):
        self.process = process
        self.port = port

    def __repr__(self) -> str:
        return f"Toxiproxy(api_url={self.api_url!r})"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def version(self) -> str:
        answer = self._call("GET", "/version")  # JSON {"version": ...} since v2.6, text before
        return answer["version"] if isinstance(answer, dict) else answer

    def create_proxy(self, name: str, upstream: str, listen: str = f"{HOST}:0") -> Proxy:
        """Proxy ``listen`` to ``upstream`` ("host:port"); port 0 lets toxiproxy pick one."""
        body = self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream,
                                               "enabled": True})
        return Proxy(self, body["name"], body["listen"], body["upstream"])

    def reset(self) -> None:
        """Remove every toxic and re-enable every proxy."""
        self._call("POST", "/reset")

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with _DIRECT.open(request, timeout=10) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise DevServerError(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode()


def start(version: str = TOXIPROXY_VERSION, timeout: float = 30.0) -> Toxiproxy:
    """Install if needed, then start toxiproxy's API on a free 127.0.0.1 port."""
    binary = install(version)
    process, port = launch("toxiproxy", lambda p: [str(binary), "-host", HOST, "-port", str(p)],
                           probe_for_port=lambda p: http_probe(HOST, p, "/version"), timeout=timeout)
    return Toxiproxy(process, port)
