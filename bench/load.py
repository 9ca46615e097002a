"""Fallback load generator (when wrk is not installed), run in its own process:
``python -m bench.load URL SECONDS CONNECTIONS TOKEN...``; prints ``[rps, p50_ms, p99_ms, errors]``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx


async def main(url: str, seconds: float, connections: int, tokens: list[str]) -> None:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)

    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker(number: int) -> None:
            nonlocal errors
            headers = {"Authorization": f"Bearer {tokens[number % len(tokens)]}"}
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.get(url, headers=headers)
                    if response.status_code != 200:
                        errors += 1
                        print(f"error: {response.status_code} {response.text[:300]}", file=sys.stderr)
                except httpx.HTTPError as error:
                    errors += 1
                    print(f"error: {type(error).__name__} {error}", file=sys.stderr)
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0.0

    print(json.dumps([len(latencies) / elapsed, pct(0.50), pct(0.99), errors]))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]))
