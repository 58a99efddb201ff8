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

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared fake server when run alone
from fake_openai import Reply, completion, error, serve_in_process  # noqa: E402

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


def answer(path: str, body: dict, delay_s: float = 0.0) -> Reply:
    """The teacher as a server's reply: a continued `<think>` prefill answered like `reply`, or an error."""
    if not path.endswith("/chat/completions"):
        return error(404, f"unknown path {path}")
    messages = body["messages"]
    if messages[-1] != {"role": "assistant", "content": "<think>"} or not body.get("continue_final_message"):
        return error(400, "expected a <think> prefill continued with continue_final_message")
    note, gold = read_prompt(messages)
    texts = [reply(note, gold, i) for i in range(int(body.get("n", 1)))]
    if any(t is None for t in texts):
        return error(400, "this teacher refuses the note")
    usage = {"prompt_tokens": 100, "completion_tokens": len(texts[0].split()), "total_tokens": 100}
    return completion(body, texts, usage, delay_s=delay_s)


if __name__ == "__main__":
    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    serve_in_process(lambda path, body: answer(path, body, delay), ["fake-teacher"])
