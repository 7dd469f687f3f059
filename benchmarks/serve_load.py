"""`vict serve` under load, on loopback: batching against one at a time, latency, errors, and overload.

    python benchmarks/serve_load.py                                   # the shipped miniature, a fresh VICT-LoRA
    python benchmarks/serve_load.py --checkpoint QS/runs/vict-lora/final   # a trained miniature row
    python benchmarks/serve_load.py --quick                           # fewer requests (about a minute)

The server runs as its own process (``python -m vict serve``), as a user runs it; the clients are threads here,
each with its own ``httpx`` connection. The requests are ``--requests`` questions about generated world images
(six questions per image, the four context modes in turn, the answer style's default budget), sent:

1. one at a time (one client, each request after the previous answer): answers/s and latency;
2. by ``--clients`` concurrent clients (each sends its share back to back) to the same server, which groups them
   into batches of up to ``--max-batch-size``: answers/s, p50/p95 latency, errors, and whether every answer is the
   text it was one at a time;
3. overload: a second server with a small queue (``--overload-queue``), hit by ``--burst`` requests at once: how
   many got 429 (with ``Retry-After``), how many got answers, anything else (an error), the server's resident
   memory before and after, and whether it answers normally right after.

Everything is bounded: a request times out after ``--timeout`` s, and each phase stops after ``--max-seconds``.
The last lines are one ``name: value`` each (``serve_batched_vs_one_at_a_time`` is the throughput ratio).
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from inference_speed import QUESTIONS  # the same six questions per image (this folder is on sys.path)

MODEL = "bench"
CONTEXTS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"context": "self"},
    {"context": "caption", "caption": "a red circle and a blue square"},
    {"context": "qa", "qa": {"question": "how many shapes are there?", "answer": "two"}},
)


def miniature_checkpoint(folder: Path) -> Path:
    """The shipped zoo's BLIP-2 and target LLaMA with a fresh VICT-LoRA, saved as a checkpoint."""
    from vict.models.builders import build_vision_llm
    from vict.zoo.shipped import shipped_zoo

    zoo = shipped_zoo("default", check=False)
    out = folder / "miniature" / "final"
    build_vision_llm(zoo.blip2_dir, zoo.target_lm_dir, method="lora", num_extra_queries=8).save_pretrained(out)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``vict serve`` in a child process, on a free loopback port."""

    def __init__(self, checkpoint: Path, threads: int, **flags: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "vict", "serve", "--checkpoint", str(checkpoint), "--port", str(self.port)]
        args += ["--model-name", MODEL, "--log-level", "warning"]
        for key, value in flags.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> Server:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vict serve exited: {self.process.stderr.read() if self.process.stderr else ''}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("vict serve did not start in 300 s")

    def __exit__(self, *exc: Any) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def requests_for(images: list[Path], n: int) -> list[dict[str, Any]]:
    urls = ["data:image/png;base64," + base64.b64encode(p.read_bytes()).decode() for p in images]
    out = []
    for i in range(n):
        url, question, vict = urls[(i // len(QUESTIONS)) % len(urls)], QUESTIONS[i % len(QUESTIONS)], CONTEXTS[i % 4]
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
        body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": content}]}
        if vict:
            body["vict"] = vict
        out.append(body)
    return out


def send(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[int, float, str, dict[str, str]]:
    """``(status, seconds, answer text or error message, headers)``; a transport failure is status 0."""
    start = time.perf_counter()
    try:
        reply = client.post(f"{url}/v1/chat/completions", json=body)
    except httpx.HTTPError as err:
        return 0, time.perf_counter() - start, f"{type(err).__name__}: {err}", {}
    took = time.perf_counter() - start
    data = reply.json()
    text = data["choices"][0]["message"]["content"] if reply.status_code == 200 else data["error"]["message"]
    return reply.status_code, took, text, dict(reply.headers)


def one_at_a_time(url: str, bodies: list[dict[str, Any]], timeout: float, max_seconds: float) -> dict[str, Any]:
    results = []
    start = time.perf_counter()
    with httpx.Client(timeout=timeout) as client:
        for body in bodies:
            results.append(send(client, url, body))
            if time.perf_counter() - start > max_seconds:
                break
    return summary(results, time.perf_counter() - start)


def concurrent(url: str, bodies: list[dict[str, Any]], clients: int, timeout: float, max_seconds: float) -> dict:
    """``clients`` threads, each sending its share (``bodies[k::clients]``) back to back; results in body order."""
    results: list[Any] = [None] * len(bodies)
    start = time.perf_counter()
    barrier = threading.Barrier(clients)

    def worker(k: int) -> None:
        with httpx.Client(timeout=timeout) as client:
            barrier.wait()
            for i in range(k, len(bodies), clients):
                if time.perf_counter() - start > max_seconds:
                    return
                results[i] = send(client, url, bodies[i])

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return summary([r for r in results if r is not None], time.perf_counter() - start, results)


def summary(results: list[Any], seconds: float, ordered: list[Any] | None = None) -> dict[str, Any]:
    ok = [r for r in results if r[0] == 200]
    latencies = sorted(r[1] for r in ok)
    return {
        "sent": len(results),
        "ok": len(ok),
        "errors": len(results) - len(ok),
        "answers_per_s": len(ok) / seconds,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p95": latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else float("nan"),
        "texts": [
            r[2] if r is not None and r[0] == 200 else None for r in (ordered if ordered is not None else results)
        ],
        "statuses": [r[0] for r in results],
        "retry_after": [r[3].get("retry-after") for r in results if r[0] == 429],
    }


def overload(checkpoint: Path, bodies: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    flags = {"max_batch_size": 4, "max_queue": args.overload_queue}
    with Server(checkpoint, args.threads, **flags) as server:
        with httpx.Client(timeout=args.timeout) as client:
            send(client, server.url, bodies[0])  # loaded and warm
            before = server.rss_mb()
        burst = [bodies[i % len(bodies)] for i in range(args.burst)]

        def one(body: dict[str, Any]) -> tuple[int, float, str, dict[str, str]]:
            with httpx.Client(timeout=args.timeout) as client:
                return send(client, server.url, body)

        with ThreadPoolExecutor(args.burst) as pool:
            results = list(pool.map(one, burst))
        after = server.rss_mb()
        with httpx.Client(timeout=args.timeout) as client:
            status, _, _, _ = send(client, server.url, bodies[1])
            health = client.get(f"{server.url}/health").json()
    statuses = [r[0] for r in results]
    return {
        "burst": len(burst),
        "429": statuses.count(429),
        "200": statuses.count(200),
        "other": len(statuses) - statuses.count(429) - statuses.count(200),
        "retry_after_ok": all(r[3].get("retry-after", "").isdigit() for r in results if r[0] == 429),
        "rss_before_mb": before,
        "rss_after_mb": after,
        "after_status": status,
        "waiting_after": health["waiting"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a trained checkpoint (default: the shipped zoo with a fresh VICT-LoRA)")
    parser.add_argument("--requests", type=int, default=96, help="requests per phase (default 96)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="the server's batch bound (default 16)")
    parser.add_argument("--max-wait-ms", type=float, default=10.0, help="the server's batch wait (default 10)")
    parser.add_argument("--burst", type=int, default=64, help="overload: requests at once (default 64)")
    parser.add_argument("--overload-queue", type=int, default=8, help="overload: the server's queue bound (8)")
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads (default 2)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="seconds per phase at most")
    parser.add_argument("--quick", action="store_true", help="32 requests, burst 32")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.burst = 32, 32

    from vict.data.world import generate_world

    with tempfile.TemporaryDirectory() as tmp:
        generate_world(Path(tmp) / "world", images=16, seed=0)
        images = sorted((Path(tmp) / "world" / "images").glob("*.png"))
        checkpoint = Path(args.checkpoint) if args.checkpoint else miniature_checkpoint(Path(tmp))
        bodies = requests_for(images, args.requests)
        flags = {"max_batch_size": args.max_batch_size, "max_wait_ms": args.max_wait_ms}
        with Server(checkpoint, args.threads, **flags) as server:
            one_at_a_time(server.url, bodies[: args.clients], args.timeout, args.max_seconds)  # warm-up, untimed
            alone = one_at_a_time(server.url, bodies, args.timeout, args.max_seconds)
            together = concurrent(server.url, bodies, args.clients, args.timeout, args.max_seconds)
            health = httpx.get(f"{server.url}/health").json()
        burst = overload(checkpoint, bodies, args)

    pairs = [(a, b) for a, b in zip(alone["texts"], together["texts"]) if a is not None and b is not None]
    identical = sum(a == b for a, b in pairs) / max(1, len(pairs))
    print(f"model: {checkpoint if args.checkpoint else 'shipped miniature, fresh VICT-LoRA'}")
    print(
        f"{len(bodies)} requests, {args.clients} clients, server batches <= {args.max_batch_size}, {args.threads} threads"
    )
    for name, s in (("one at a time", alone), (f"{args.clients} concurrent", together)):
        print(
            f"  {name:>14}: {s['ok']}/{s['sent']} ok, {s['answers_per_s']:.2f} answers/s, "
            f"p50 {1000 * s['p50']:.0f} ms, p95 {1000 * s['p95']:.0f} ms"
        )
    print(f"  server: {health['batches']} batches for {health['answered']} answers (incl. warm-up and one at a time)")
    print(
        f"overload: {burst['burst']} at once, queue {args.overload_queue}: {burst['429']} x 429, {burst['200']} x 200, "
        f"{burst['other']} other; RSS {burst['rss_before_mb']:.0f} -> {burst['rss_after_mb']:.0f} MB; "
        f"next request {burst['after_status']}"
    )
    print(f"serve_batched_vs_one_at_a_time: {together['answers_per_s'] / alone['answers_per_s']:.2f}")
    print(f"serve_batched_identical: {identical:.3f}")
    print(f"serve_errors: {alone['errors'] + together['errors']}")
    print(f"serve_p50_ms: {1000 * together['p50']:.0f}")
    print(f"serve_p95_ms: {1000 * together['p95']:.0f}")
    print(f"serve_one_at_a_time_p50_ms: {1000 * alone['p50']:.0f}")
    print(f"serve_overload_429_fraction: {burst['429'] / burst['burst']:.2f}")
    print(f"serve_overload_other_errors: {burst['other']}")
    print(f"serve_overload_retry_after_ok: {int(burst['retry_after_ok'])}")
    print(f"serve_overload_rss_growth_mb: {burst['rss_after_mb'] - burst['rss_before_mb']:.0f}")
    print(f"serve_after_burst_ok: {int(burst['after_status'] == 200 and burst['waiting_after'] == 0)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
