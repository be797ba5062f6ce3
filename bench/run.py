"""Gateway overhead against calling the upstream directly, measured in one run.

    .venv/bin/python bench/run.py [--duration 10] [--workers 1] [--out BENCHMARKS.md]

Starts nginx as a fast fake upstream (bench/nginx.conf), a standalone `creditdash gateway`
on a fresh SQLite database with full metering, and drives both with wrk (bench/post.lua) at
concurrency 1 and 32, non-streaming and streaming. Writes a markdown report with requests/s,
latency percentiles, the latency the gateway adds and the throughput ratio, plus the CPU each
process used. Needs Debian's nginx and wrk (installed when missing). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_PORT = 18181
GATEWAY_PORT = 18182
CATALOG = """
providers:
  - {name: bench-json, base_url: "http://127.0.0.1:18181/v1", api_key: sk-bench-upstream}
  - {name: bench-sse, base_url: "http://127.0.0.1:18181/stream/v1", api_key: sk-bench-upstream}
models:
  - name: bench-json
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40"}
    routes: [{provider: bench-json, upstream_model: bench, cost: {input_per_mtok: "0.15", output_per_mtok: "0.60"}}]
  - name: bench-stream
    price: {input_per_mtok: "0.60", output_per_mtok: "2.40"}
    routes: [{provider: bench-sse, upstream_model: bench, cost: {input_per_mtok: "0.15", output_per_mtok: "0.60"}}]
"""


@dataclass
class Result:
    target: str
    mode: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk") if shutil.which(tool) is None]
    if missing and Path("/usr/sbin/nginx").exists():
        missing = [t for t in missing if t != "nginx"]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light", "wrk"], check=True)


def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


def run_wrk(url: str, concurrency: int, duration_s: int, env: dict[str, str]) -> Result:
    threads = 1 if concurrency == 1 else 2
    command = [
        "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s}s", "--timeout", "10s",
        "-s", str(ROOT / "bench" / "post.lua"), url,
    ]  # fmt: skip
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (.*)", output)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    fields = dict(pair.split("=") for pair in match.group(1).split())
    requests, duration_us = int(fields["requests"]), int(fields["duration_us"])
    return Result(
        target="",
        mode="",
        concurrency=concurrency,
        rps=requests / (duration_us / 1e6),
        p50_ms=int(fields["p50_us"]) / 1000,
        p90_ms=int(fields["p90_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        errors=int(fields["errors"]) + int(fields["non2xx"]),
    )


def cpu_seconds(process: psutil.Process) -> float:
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    ensure_tools()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    tmp = Path(tempfile.mkdtemp(prefix="creditdash-bench-"))
    env = {
        **os.environ,
        "CREDITDASH_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "CREDITDASH_DATA_DIR": str(tmp / "data"),
        "CREDITDASH_ALLOW_PRIVATE_UPSTREAMS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The CLI of this checkout, whichever virtualenv runs the script (ROOT is on PYTHONPATH).
    cli = [sys.executable, "-m", "creditdash.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    (tmp / "catalog.yaml").write_text(CATALOG)
    subprocess.run(
        [*cli, "catalog", "import", str(tmp / "catalog.yaml")],
        env=env,
        check=True,
        capture_output=True,
    )
    created = subprocess.run(
        [*cli, "customers", "create", "--email", "bench@example.com", "--name", "Bench",
         "--credits", "1000000", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    key = json.loads(created.stdout)["api_key"]

    upstream = subprocess.Popen([nginx, "-p", str(tmp), "-c", str(ROOT / "bench" / "nginx.conf")])
    gateway = subprocess.Popen(
        [*cli, "gateway", "--port", str(GATEWAY_PORT), "--workers", str(args.workers)],
        env=env, start_new_session=True,
    )  # fmt: skip
    results: list[Result] = []
    cpu: dict[str, float] = {}
    try:
        wait_port(UPSTREAM_PORT)
        wait_port(GATEWAY_PORT)
        gw_proc, up_proc = psutil.Process(gateway.pid), psutil.Process(upstream.pid)
        for mode in ("json", "stream"):
            wrk_env = {**env, "BENCH_KEY": key, "BENCH_STREAM": "1" if mode == "stream" else "0",
                       "BENCH_MODEL": f"bench-{mode}"}  # fmt: skip
            direct_path = (
                "/v1/chat/completions" if mode == "json" else "/stream/v1/chat/completions"
            )
            targets = {
                "direct": f"http://127.0.0.1:{UPSTREAM_PORT}{direct_path}",
                "creditdash": f"http://127.0.0.1:{GATEWAY_PORT}/v1/chat/completions",
            }
            for concurrency in (1, 32):
                for target, url in targets.items():
                    run_wrk(url, concurrency, 2, wrk_env)  # warm-up
                    proc = gw_proc if target == "creditdash" else up_proc
                    before = cpu_seconds(proc)
                    result = run_wrk(url, concurrency, args.duration, wrk_env)
                    used = cpu_seconds(proc) - before
                    cpu[f"{target}/{mode}/c{concurrency}"] = used / args.duration
                    result.target, result.mode = target, mode
                    results.append(result)
                    print(f"{target:>10} {mode:>6} c={concurrency:<3} {result.rps:9.0f} req/s "
                          f"p50 {result.p50_ms:7.2f} ms p99 {result.p99_ms:7.2f} ms "
                          f"errors {result.errors}", flush=True)  # fmt: skip
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        upstream.send_signal(signal.SIGQUIT)
        gateway.wait(timeout=20)
        upstream.wait(timeout=20)
    verify = subprocess.run([*cli, "ledger", "verify"], env=env, capture_output=True, text=True)
    usage_rows = _usage_rows(tmp / "bench.db")
    report = render(results, cpu, args, verify.returncode == 0, usage_rows)
    Path(args.out).write_text(report)
    print(report)
    shutil.rmtree(tmp, ignore_errors=True)


def _usage_rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM usage_records").fetchone()[0])


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def render(
    results: list[Result],
    cpu: dict[str, float],
    args: argparse.Namespace,
    ledger_ok: bool,
    rows: int,
) -> str:
    by_key = {(r.target, r.mode, r.concurrency): r for r in results}
    lines = [
        "# Benchmarks",
        "",
        "Gateway overhead against calling the upstream directly, measured in one run by",
        "`.venv/bin/python bench/run.py` (not part of `make test`). The upstream is nginx",
        "answering from memory, so it is never the bottleneck; wrk drives both with keep-alive",
        "connections. creditdash runs as `creditdash gateway --workers "
        f"{args.workers}` on SQLite (WAL) with full metering: key lookup (cached), a hold before",
        "the upstream call, and the post plus a usage record after it, for every request.",
        "",
        f"- Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total // 2**30} GiB, "
        f"{platform.platform()}",
        f"- Python {platform.python_version()}; {_version(['nginx', '-v'])}; "
        f"{_version(['wrk', '--version'])}",
        f"- {args.duration} s per cell after a 2 s warm-up; the machine is shared, so compare",
        "  ratios within this run rather than absolute numbers across runs.",
        "",
        "| mode | concurrency | direct req/s | creditdash req/s | throughput ratio "
        "| direct p50 / p99 ms | creditdash p50 / p99 ms | added p50 / p99 ms | gateway CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("json", "stream"):
        for concurrency in (1, 32):
            direct = by_key[("direct", mode, concurrency)]
            ours = by_key[("creditdash", mode, concurrency)]
            lines.append(
                f"| {'non-stream' if mode == 'json' else 'stream'} | {concurrency} "
                f"| {direct.rps:,.0f} | {ours.rps:,.0f} | {ours.rps / direct.rps:.3f} "
                f"| {direct.p50_ms:.2f} / {direct.p99_ms:.2f} "
                f"| {ours.p50_ms:.2f} / {ours.p99_ms:.2f} "
                f"| {ours.p50_ms - direct.p50_ms:.2f} / {ours.p99_ms - direct.p99_ms:.2f} "
                f"| {cpu[f'creditdash/{mode}/c{concurrency}']:.2f} cores |"
            )
    errors = sum(r.errors for r in results)
    lines += [
        "",
        f"Errors and non-2xx answers across the run: {errors}. Usage records written: {rows:,} "
        f"(one per metered request, warm-ups included). `creditdash ledger verify` after the "
        f"run: {'clean' if ledger_ok else 'FAILED'}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
