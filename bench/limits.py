"""What a key's limits cost per request: in the process, and shared through Redis.

    .venv/bin/python bench/limits.py [--requests 20000] [--concurrency 1,64]

Starts a throwaway redis-server on loopback and, on uvloop as the gateway runs, times what the
gateway does for a key with both limits set: admit, and leave (whose lease removal
runs in the background and is waited for here, so it is counted). At concurrency 1 the time per
request is the latency a request adds; at higher concurrency, requests per second show the
event loop's cost (what other requests wait for). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time

import uvloop

from creditdash.proxy.limits import LocalLimits
from creditdash.proxy.limits_redis import RedisLimits, limits_client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _drive(
    limits: LocalLimits | RedisLimits, requests: int, concurrency: int
) -> tuple[float, float]:
    """Wall and CPU seconds of this process for `requests` requests through the limits,
    `concurrency` at a time."""
    per_task = requests // concurrency

    async def one_task(n: int) -> None:
        key = f"key_bench_{n % 8}"
        for _ in range(per_task):
            assert await limits.admit(key, 10**6, 10**4) is None
            limits.leave(key)
        if isinstance(limits, RedisLimits):
            await asyncio.gather(*limits._background)

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one_task(n) for n in range(concurrency)))
    return time.perf_counter() - started, time.process_time() - cpu


async def _bench(url: str, requests: int, concurrencies: list[int]) -> None:
    print(
        f"{'backend':<8} {'concurrency':>11} {'latency µs':>11} {'loop CPU µs':>11} "
        f"{'requests/s':>11}"
    )
    for name in ("local", "redis"):
        for concurrency in concurrencies:
            limits: LocalLimits | RedisLimits = (
                LocalLimits() if name == "local" else RedisLimits(limits_client(url))
            )
            await _drive(limits, min(requests, 2000), concurrency)  # warm up, connect
            seconds, cpu = await _drive(limits, requests, concurrency)
            await limits.aclose()
            done = requests // concurrency * concurrency
            print(
                f"{name:<8} {concurrency:>11} {seconds / done * 1e6 * concurrency:>11.1f} "
                f"{cpu / done * 1e6:>11.1f} {done / seconds:>11.0f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", default="1,64")
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server is missing")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                with socket.socket() as sock:
                    if sock.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            concurrencies = [int(c) for c in args.concurrency.split(",")]
            uvloop.run(_bench(f"redis://127.0.0.1:{port}/0", args.requests, concurrencies))
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
