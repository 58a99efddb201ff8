"""Judge throughput: does the client keep a slow judge server fully busy, and does the cache work?

A judge call is dominated by the server's latency, so the best a client can do
with `concurrency` requests in flight is ceil(n / concurrency) x latency. This
runs n distinct judge requests against a loopback OpenAI-compatible server (in
its own process) that answers every request after a fixed delay, and checks
that the batch finishes within 2x that ideal; then it runs the same batch
again, which the on-disk cache must serve without a single request.

    python benchmarks/bench_judge.py [--requests 512] [--concurrency 32] [--delay 0.2]

Exits 1 when the batch misses the 2x bound or the repeat sends requests.
Results are recorded in docs/judge.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import socket
import sys
import tempfile
import time

NOTE = (
    "CHIEF COMPLAINT: chest pain\n\nPRESENT ILLNESS: 67-year-old man with two hours of crushing substernal "
    "chest pain radiating to the left arm, diaphoresis and nausea. ECG without ST elevation; troponin rising.\n\n"
    "MEDICAL HISTORY: hypertension, type 2 diabetes, hyperlipidemia, smoker.\n\n"
    "MEDICATION ON ADMISSION: metformin, lisinopril, atorvastatin.\n\nALLERGIES: none.\n\n"
    "PHYSICAL EXAM: BP 150/90, HR 98, lungs clear, no murmurs.\n\nFAMILY HISTORY: father with MI at 60.\n\n"
    "SOCIAL HISTORY: 40 pack-years."
)
CODES = ["I214", "I2510", "I200", "R079", "I10", "E119", "J189", "N179"]


async def _serve(port: int, delay: float, ready) -> None:
    """A minimal HTTP/1.1 keep-alive server: every POST gets {"score": n} after `delay` seconds."""
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                await asyncio.sleep(delay)
                count += 1
                if head.startswith(b"GET /v1/models"):
                    payload = {"data": [{"id": "bench-judge"}]}
                else:
                    model = json.loads(body)["model"]
                    content = json.dumps({"score": 1 + count % 5})
                    payload = {
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                        "model": model,
                    }
                data = json.dumps(payload).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
                    + data
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    ready.set()
    async with server:
        await server.serve_forever()


def _server_process(port: int, delay: float, ready) -> None:
    asyncio.run(_serve(port, delay, ready))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _requests(n: int):
    from deepicd.rewards.scorer import JudgeRequest

    return [
        JudgeRequest(
            note=NOTE, prediction=CODES[i % len(CODES)], trace=f"Reasoning {i}: chest pain with rising troponin."
        )
        for i in range(n)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=512, help="judge calls in the batch")
    parser.add_argument("--concurrency", type=int, default=32, help="judge.concurrency")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per answer")
    args = parser.parse_args()

    from deepicd.rewards.config import JudgeConfig
    from deepicd.rewards.judge import build_judge

    port = _free_port()
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    server = context.Process(target=_server_process, args=(port, args.delay, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            print("the benchmark server did not start", file=sys.stderr)
            return 1
        with tempfile.TemporaryDirectory() as cache_dir:
            config = JudgeConfig(
                url=f"http://127.0.0.1:{port}/v1",
                model="bench-judge",
                concurrency=args.concurrency,
                timeout_s=10.0,
                cache_dir=cache_dir,
            )
            judge = build_judge(config)
            requests = _requests(args.requests)
            for request in requests[: len(CODES)]:
                judge.prompt(request)  # load the ICD-10-CM release before timing

            started, cpu_started = time.perf_counter(), time.process_time()
            verdicts = asyncio.run(judge.rate_many(requests))
            cold = time.perf_counter() - started
            client_cpu = time.process_time() - cpu_started  # the server is another process: this is the client's
            cold_stats = dict(judge.last_batch_stats)

            started = time.perf_counter()
            repeat = asyncio.run(judge.rate_many(requests))
            warm = time.perf_counter() - started
            warm_stats = dict(judge.last_batch_stats)
    finally:
        server.terminate()
        server.join(5)

    ideal = math.ceil(args.requests / args.concurrency) * args.delay
    bound = 2 * ideal
    ok_rows = sum(v.status == "ok" for v in verdicts)
    cached_rows = sum(v.status == "cached" for v in repeat)
    latency = f"p50 {cold_stats['latency_p50_s'] * 1000:.0f} ms, p95 {cold_stats['latency_p95_s'] * 1000:.0f} ms"
    print(f"judge benchmark: {args.requests} requests, concurrency {args.concurrency}, latency {args.delay:.3f} s")
    print(f"  first batch : {cold:6.2f} s  ({args.requests / cold:6.1f} ratings/s)")
    print(f"                ideal ceil(n/concurrency) x latency = {ideal:.2f} s, bound 2x = {bound:.2f} s")
    counts = f"ok {ok_rows}, requests {cold_stats['requests']:.0f}, retried {cold_stats['retried']:.0f}"
    print(f"                {counts}, {latency}, client CPU {client_cpu:.2f} s")
    print(f"  same batch  : {warm:6.2f} s  cached {cached_rows}, requests {warm_stats['requests']:.0f}")
    passed = cold <= bound and ok_rows == args.requests and cached_rows == args.requests and warm_stats["requests"] == 0
    verdict = "PASS" if passed else "FAIL"
    print(f"  {verdict}: {cold / ideal:.2f}x the latency-bound ideal (bound 2x); repeat served from the cache")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
