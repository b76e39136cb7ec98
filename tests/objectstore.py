"""Real S3-compatible servers on loopback for the bucket tests: moto's server, and a flaky proxy.

``python tests/objectstore.py proxy UPSTREAM FAIL_EVERY PORT`` runs the proxy on its own: it
forwards every request to UPSTREAM, except every FAIL_EVERY-th, which gets an S3 error
(503 SlowDown and 500 InternalError, alternately) after its body was read. ``GET /_flaky``
returns how many requests were forwarded and failed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator
from urllib.parse import urlsplit

from videolake.flows.server import free_port

SECRET = "vl-SECRET-d41d8cd98f00b204e9800998ecf8427e"  # the secret access key every bucket test uses
ACCESS_KEY = "videolake-test-key"


@dataclass
class Server:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        if self.process.poll() is None:
            self.process.kill()


def _wait_http(url: str, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with {process.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=2).read()
            return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout_s} s")


@contextlib.contextmanager
def _server(command: Callable[[int], list[str]], health_path: str) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen([sys.executable, *command(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(f"http://127.0.0.1:{port}", process)
    try:
        _wait_http(server.url + health_path, process)
        yield server
    finally:
        server.stop()


def moto_server() -> contextlib.AbstractContextManager[Server]:
    return _server(lambda port: ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], "/moto-api/")


def flaky_proxy(upstream: str, fail_every: int) -> contextlib.AbstractContextManager[Server]:
    return _server(lambda port: [os.path.abspath(__file__), "proxy", upstream, str(fail_every), str(port)], "/_flaky")


def proxy_stats(proxy: Server) -> dict[str, int]:
    return json.loads(urllib.request.urlopen(proxy.url + "/_flaky", timeout=5).read())


def s3_env(endpoint_url: str) -> dict[str, str]:
    """The standard variables a user sets for an S3-compatible store."""
    return {"AWS_ENDPOINT_URL": endpoint_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _serve_proxy(upstream: str, port: int, fail_every: int) -> None:
    target = urlsplit(upstream)
    stats = {"requests": 0, "forwarded": 0, "failed": 0}
    lock = threading.Lock()
    hop = {"connection", "keep-alive", "transfer-encoding", "expect", "proxy-connection", "te", "upgrade"}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers:
                if key.lower() not in hop and (key.lower() != "content-length" or self.command == "HEAD"):
                    self.send_header(key, value)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            body = self._body()
            if self.path == "/_flaky":
                with lock:
                    self._reply(200, [("Content-Type", "application/json")], json.dumps(stats).encode())
                return
            with lock:
                stats["requests"] += 1
                n = stats["requests"]
                fail = fail_every > 0 and n % fail_every == 0
                stats["failed" if fail else "forwarded"] += 1
            if fail:
                code, status = ("SlowDown", 503) if (n // fail_every) % 2 else ("InternalError", 500)
                xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>injected</Message></Error>"
                self._reply(status, [("Content-Type", "application/xml")], xml.encode())
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop}
                conn.request(self.command, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self._reply(response.status, response.getheaders(), data)
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle  # noqa: N815

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "proxy":
        _serve_proxy(sys.argv[2], int(sys.argv[4]), int(sys.argv[3]))  # upstream, fail_every, port
