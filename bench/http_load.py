"""Load a served URL from a process of its own: `--concurrency` clients, each asking again as soon as answered.

    .venv/bin/python -m bench.http_load URL [--concurrency 8] [--requests 400] [--warm 20] [--distinct]

Benchmarks start it as a subprocess so that the clients do not share the server's process, its interpreter lock
or its event loop (a client in the server's process measures the two together). Prints one JSON line: queries per
second over the timed requests, latency p50 and p95 in seconds, the bytes of one answer. Any answer but 200 fails
the run: a throughput of error pages means nothing. With `--distinct` each request carries a parameter of its own
(`&n=1`, `&n=2`...) that the server ignores: no two are the same question, so an answer the server keeps for the
next asker (server/web/kept_answers.py) is never used, and the answer made anew is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import httpx2


async def load(url: str, concurrency: int, requests: int, warm: int,
               distinct: bool = False) -> dict[str, float | int]:
    latencies: list[float] = []
    sizes: set[int] = set()
    left = requests
    asked = itertools.count(1)

    async with httpx2.AsyncClient(limits=httpx2.Limits(max_connections=concurrency), timeout=120) as client:
        async def ask() -> float:
            started = time.perf_counter()
            response = await client.get(f"{url}{'&' if '?' in url else '?'}n={next(asked)}" if distinct else url)
            if response.status_code != 200:
                raise SystemExit(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
            sizes.add(len(response.content))
            return time.perf_counter() - started

        async def client_loop() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                latencies.append(await ask())

        for _ in range(warm):  # connections opened and the server's first-request paths taken, untimed
            await ask()
        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    latencies.sort()
    return {"queries_per_second": round(requests / seconds, 1), "p50_s": round(latencies[len(latencies) // 2], 4),
            "p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 4),
            "answer_bytes": max(sizes), "requests": len(latencies), "concurrency": concurrency}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warm", type=int, default=20)
    parser.add_argument("--distinct", action="store_true", help="no two requests the same question")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(load(args.url, args.concurrency, args.requests, args.warm, args.distinct))))


if __name__ == "__main__":
    main()
