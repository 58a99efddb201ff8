"""One scriptable OpenAI-compatible server on loopback, shared by every test that needs a server.

A test hands it `respond(path, body) -> Reply` and reads back what the client
sent: bodies, headers (matched in any case, as in HTTP), paths, and how many
requests were in flight at once. A reply is JSON or raw bytes with any status
and headers, optionally after a delay, or a hang that lasts until the server
stops: that is how the clients' retries, timeouts and deadlines are tested.
`GET /v1/models` lists `models`. The server runs in a thread of the test
process, or as its own process (`python fake_openai.py`, see `serve_in_process`)
where a test must kill the client mid-request.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    """What the server answers to one request."""

    status: int = 200
    payload: dict | bytes = b"{}"
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0  # wait this long before answering
    hang: bool = False  # never answer; the connection closes when the server stops


HANG = Reply(hang=True)


def error(status: int, message: str = "injected", headers: dict | None = None) -> Reply:
    return Reply(status, {"error": {"message": message}}, headers or {})


def completion(body: dict, texts: list[str], usage: dict | None = None, delay_s: float = 0.0) -> Reply:
    """A completions or chat-completions answer (whichever `body` asked for) holding `texts` in order."""
    if "prompt" in body:
        choices = [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)]
        kind = "text_completion"
    else:
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        kind = "chat.completion"
    payload = {"id": "x", "object": kind, "created": 0, "model": body.get("model", ""), "choices": choices}
    if usage is not None:
        payload["usage"] = usage
    return Reply(200, payload, delay_s=delay_s)


def prompt_text(body: dict) -> str:
    """The text a request carries: the completions prompt, or the chat messages as JSON."""
    return body["prompt"] if "prompt" in body else json.dumps(body.get("messages", []))


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops bursts of connections for a second
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a timeout, a deadline, a killed process) leaves a broken pipe: expected.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeOpenAIServer:
    """The server; use it as a context manager, or `start()` and `close()`."""

    def __init__(self, respond: Callable[[str, dict], Reply], models: list[str] | None = None) -> None:
        self.respond = respond
        self.models = ["fake-model"] if models is None else models
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at shutdown so hanging handlers return
        self.bodies: list[dict] = []
        self.headers: list = []  # email.message.Message objects: names match in any case, as in HTTP
        self.paths: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = _Server(("127.0.0.1", 0), self._handler())
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def requests(self) -> int:
        """POST requests received (every attempt counts)."""
        with self.lock:
            return len(self.bodies)

    def start(self) -> "FakeOpenAIServer":
        self.thread.start()
        return self

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _send(self, reply: Reply) -> None:
                data = reply.payload if isinstance(reply.payload, bytes) else json.dumps(reply.payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up on this request already
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server.lock:
                    server.paths.append(self.path)
                if self.path.rstrip("/").endswith("/models"):
                    data = {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]}
                    self._send(Reply(200, data))
                else:
                    self._send(error(404, f"unknown path {self.path}"))

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.paths.append(self.path)
                    server.bodies.append(body)
                    server.headers.append(self.headers)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    reply = server.respond(self.path, body)
                    if reply.delay_s:
                        server.release.wait(reply.delay_s)
                    if reply.hang:
                        server.release.wait(30)
                        self.close_connection = True
                        return
                finally:
                    with server.lock:
                        server.in_flight -= 1
                self._send(reply)

        return Handler


def serve_in_process(respond: Callable[[str, dict], Reply], models: list[str] | None = None) -> None:
    """Serve until killed, after printing `PORT <n>` for the parent process to read."""
    server = FakeOpenAIServer(respond, models)
    print(f"PORT {server.port}", flush=True)
    server.httpd.serve_forever()
