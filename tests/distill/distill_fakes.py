"""A fake teacher for the distillation tests, usable in-process or as an OpenAI-compatible server.

It answers oracle prompts the way a good teacher would: reasoning built from
the note's words, then the gold code it reads from the prompt's last line. Marker
words in a note make it misbehave on purpose, so the filters and error counts
can be checked against known answers:

  zzwrong  -> answers with another valid code        (filter: wrong_code)
  zzearly  -> names the gold code inside the reasoning (filter: early_mention)
  zzshort  -> a two-word trace                       (filter: too_short)
  zznopair -> never closes the think block           (filter: no_pair)
  zzfail   -> HTTP 400 from the server / an error result in-process (backend error)

Run as a server: `python distill_fakes.py DELAY_S` prints `PORT <n>` and serves on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_GOLD = re.compile(r"<diagnosis>([A-Z0-9]+)</diagnosis>\.?\s*$")
_NOTE = re.compile(r"Admission note:\n\n(.*?)\n\nPrimary discharge diagnosis", re.S)


def read_prompt(messages: list[dict]) -> tuple[str, str]:
    """(note, gold code) from oracle chat messages."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    gold = _GOLD.search(user)
    note = _NOTE.search(user)
    if gold is None or note is None:
        raise ValueError("not an oracle prompt")
    return note.group(1), gold.group(1)


def reply(note: str, gold: str, index: int = 0) -> str | None:
    """The completion after the `<think>` prefill; None means the teacher fails on this note."""
    lowered = note.lower()
    if "zzfail" in lowered:
        return None
    words = [w for w in re.findall(r"[a-z]{4,}", lowered) if not w.startswith("zz")][:30]
    reasoning = (
        f"\nThe note describes {' '.join(words[:8])}. Looking at the history, {' '.join(words[8:16])} "
        f"stand out, and the examination adds {' '.join(words[16:30])}. Together these findings point to one "
        f"main condition that explains the admission (sample {index}).\n"
    )
    code = gold
    if "zzwrong" in lowered:
        code = "A000" if gold != "A000" else "B001"
    if "zzearly" in lowered:
        reasoning = f"\nThis is clearly {gold[:3]}.{gold[3:]} from the start. " + reasoning
    if "zzshort" in lowered:
        reasoning = "\nObvious case.\n"
    if "zznopair" in lowered:
        return reasoning + "and so on without ever finishing"
    return f"{reasoning}</think>\n<diagnosis>{code}</diagnosis>"


class InProcessTeacher:
    """A `Generator` answering with `reply`, for running the distill stage without a server."""

    def __init__(self, config=None) -> None:
        self.config = config
        self.seen: list[str] = []
        self.closed = False

    def generate(self, requests, sampling):
        from deepicd.generate.base import GenerationResult

        for request in requests:
            self.seen.append(request.key)
            assert request.prefill == "<think>"
            note, gold = read_prompt(request.messages)
            texts = [reply(note, gold, i) for i in range(sampling.n)]
            if any(t is None for t in texts):
                yield GenerationResult(key=request.key, completions=[], error="teacher failed")
            else:
                yield GenerationResult(key=request.key, completions=texts, completion_tokens=[len(t.split()) for t in texts])

    def close(self) -> None:
        self.closed = True


class _Handler(BaseHTTPRequestHandler):
    delay_s = 0.0

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "fake-teacher", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not self.path.endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"unknown path {self.path}"}})
            return
        messages = body["messages"]
        if messages[-1] != {"role": "assistant", "content": "<think>"} or not body.get("continue_final_message"):
            self._send(400, {"error": {"message": "expected a <think> prefill continued with continue_final_message"}})
            return
        time.sleep(self.delay_s)
        note, gold = read_prompt(messages)
        texts = [reply(note, gold, i) for i in range(int(body.get("n", 1)))]
        if any(t is None for t in texts):
            self._send(400, {"error": {"message": "this teacher refuses the note"}})
            return
        choices = [
            {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
            for i, t in enumerate(texts)
        ]
        usage = {"prompt_tokens": 100, "completion_tokens": len(texts[0].split()), "total_tokens": 100}
        self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices, "usage": usage})


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        # A client killed mid-request (the SIGKILL test) leaves a broken pipe: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(delay_s: float) -> None:
    _Handler.delay_s = delay_s
    server = _QuietServer(("127.0.0.1", 0), _Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 0.0)
