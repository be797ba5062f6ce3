"""Gateway speed against the direct upstream and against the LiteLLM proxy, in one run.

    .venv/bin/python bench/run.py [--duration 10] [--warmup 2] [--concurrency 1,16,64]
                                  [--only NAME,...] [--out BENCHMARKS.md]

Starts nginx as a fast fake upstream (bench/nginx.conf) and builds the load driver
(bench/loadgen.c). Then, one target at a time, it starts a server, drives it non-streaming and
streaming at each concurrency, records requests/s, latency and time to first byte percentiles,
the CPU used by the server, its database and the driver, and the largest RSS of one server
worker, and stops it. Targets:

- direct: nginx itself;
- creditdash on SQLite and on PostgreSQL with 1 and 2 workers (`creditdash gateway`), full
  metering, each on a fresh database; afterwards the number of usage records must equal the
  number of 2xx answers and `creditdash ledger verify` must be clean;
- the LiteLLM proxy (pinned below) with 1 and 2 workers, no database, in its own virtualenv
  under .bench-cache/ (created when missing).

Writes BENCHMARKS.md with the machine, versions, tables, ratios and bench/profile.md (the
hand-kept profile of a request). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = ROOT / ".bench-cache" / f"litellm-{LITELLM_VERSION}"
LITELLM_KEY = "sk-litellm-bench"
UPSTREAM_PORT = 18181
FIRST_PORT = 18190
MODES = ("json", "stream")
DIRECT_PATHS = {"json": "/v1/chat/completions", "stream": "/stream/v1/chat/completions"}
BODIES = {
    "json": {"model": "bench-json", "max_tokens": 64},
    "stream": {
        "model": "bench-stream",
        "max_tokens": 64,
        "stream": True,
        "stream_options": {"include_usage": True},
    },
}
MESSAGES = [{"role": "user", "content": "Say hello to the benchmark."}]
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
LITELLM_CONFIG = """
model_list:
  - model_name: bench-json
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:18181/v1", api_key: sk-bench-upstream}
  - model_name: bench-stream
    litellm_params: {model: openai/bench, api_base: "http://127.0.0.1:18181/stream/v1", api_key: sk-bench-upstream}
general_settings:
  master_key: sk-litellm-bench
litellm_settings:
  set_verbose: false
"""
# Durable PostgreSQL, as production would run it (fsync and synchronous commit on).
PG_SETTINGS = "-c shared_buffers=256MB"


@dataclass
class Cell:
    target: str
    mode: str
    concurrency: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    errors: int
    server_cores: float
    db_cores: float
    driver_cores: float
    # CPU the server and its database spent per answered request, warm-up included in both: a
    # cost that time-sharing with other work on the machine barely moves, unlike req/s.
    cpu_us_per_request: float = 0.0


@dataclass
class Target:
    name: str
    kind: str  # direct | creditdash | litellm
    workers: int = 1
    database: str = "-"
    port: int = UPSTREAM_PORT
    headers: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=lambda: dict(DIRECT_PATHS))
    process: subprocess.Popen[bytes] | None = None
    max_rss_mib: float = 0.0
    answered_2xx: int = 0
    check: str = ""
    # creditdash: the bench customer has a hard monthly budget (far above what the run spends),
    # so every hold is also counted in the budget row.
    hard_budget: bool = False
    # creditdash: the number of customers (one key each) the connections share, round robin.
    customers: int = 1


# ------------------------------------------------------------------------------ helpers


def ensure_tools() -> None:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True)


def build_loadgen(tmp: Path) -> Path:
    binary = tmp / "loadgen"
    subprocess.run(
        ["cc", "-O2", "-pthread", "-o", str(binary), str(ROOT / "bench" / "loadgen.c")],
        check=True,
    )
    return binary


def ensure_litellm() -> Path:
    python = LITELLM_VENV / "bin" / "python"
    if not (LITELLM_VENV / "bin" / "litellm").exists():
        print(f"creating {LITELLM_VENV} (LiteLLM {LITELLM_VERSION}, a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"litellm[proxy]=={LITELLM_VERSION}", "prisma"],
            check=True,
        )  # fmt: skip
    return LITELLM_VENV / "bin" / "litellm"


def wait_ready(port: int, probe: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0 and probe():
                return
        time.sleep(0.25)
    raise TimeoutError(f"nothing ready on port {port}")


def first_headers(target: Target) -> list[str]:
    """The target's headers, with an @FILE of alternatives (loadgen.c) as its first line."""
    return [
        Path(h[1:]).read_text().splitlines()[0] if h.startswith("@") else h for h in target.headers
    ]


def post_once(target: Target, mode: str) -> bool:
    headers = dict(h.split(": ", 1) for h in first_headers(target))
    request = urllib.request.Request(
        f"http://127.0.0.1:{target.port}{target.paths[mode]}",
        data=json.dumps({**BODIES[mode], "messages": MESSAGES}).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 (loopback)
            answer.read()
            ok = bool(answer.status == 200)
            target.answered_2xx += ok  # each one is a metered request, too
            return ok
    except OSError:
        return False


def tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_by_pid(root: psutil.Process | None) -> dict[int, float]:
    """CPU seconds used so far by each process of a tree, listed now."""
    used = {}
    for proc in tree(root) if root is not None else []:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def cpu_since(root: psutil.Process | None, before: dict[int, float]) -> float:
    """CPU seconds the tree used since `before`, with processes started meanwhile (a
    PostgreSQL backend for a new connection, say) counted from zero. A process that ended
    meanwhile is missing from both ends (none does during a cell)."""
    return sum(now - before.get(pid, 0.0) for pid, now in cpu_by_pid(root).items())


class RssSampler(threading.Thread):
    """The largest RSS any one process of a server tree reached, sampled every 0.2 s."""

    def __init__(self, root: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.root, self.max_bytes, self.stopped = root, 0, threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            for proc in tree(self.root):
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.max_bytes = max(self.max_bytes, proc.memory_info().rss)


def driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------------------ measuring


def measure(
    target: Target,
    loadgen: Path,
    bodies: dict[str, Path],
    args: argparse.Namespace,
    db_root: psutil.Process | None,
) -> list[Cell]:
    assert target.process is not None
    server = psutil.Process(target.process.pid)
    sampler = RssSampler(server)
    sampler.start()
    cells = []
    for mode in MODES:
        for concurrency in args.concurrency:
            before = cpu_by_pid(server), cpu_by_pid(db_root), driver_cpu()
            started = time.monotonic()
            out = subprocess.run(
                [str(loadgen), "127.0.0.1", str(target.port), target.paths[mode],
                 str(bodies[mode]), str(concurrency), str(args.warmup), str(args.duration),
                 *target.headers],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            elapsed = time.monotonic() - started
            result = json.loads(out)
            target.answered_2xx += result["answered_2xx"]
            used = (
                cpu_since(server, before[0]),
                cpu_since(db_root, before[1]),
                driver_cpu() - before[2],
            )
            cell = Cell(
                target=target.name,
                mode=mode,
                concurrency=concurrency,
                rps=result["rps"],
                p50_ms=result["p50_ms"],
                p90_ms=result["p90_ms"],
                p99_ms=result["p99_ms"],
                ttfb_p50_ms=result["ttfb_p50_ms"],
                ttfb_p99_ms=result["ttfb_p99_ms"],
                errors=result["errors"] + result["non2xx"],
                server_cores=used[0] / elapsed,
                db_cores=used[1] / elapsed,
                driver_cores=used[2] / elapsed,
                cpu_us_per_request=(used[0] + used[1]) * 1e6 / max(1, result["answered_2xx"]),
            )
            cells.append(cell)
            print(f"{target.name:>24} {mode:>6} c={concurrency:<3} {cell.rps:9.0f} req/s "
                  f"p50 {cell.p50_ms:7.2f} p99 {cell.p99_ms:7.2f} ms "
                  f"ttfb p50 {cell.ttfb_p50_ms:6.2f} ms errors {cell.errors} "
                  f"cpu {cell.server_cores:.2f}+{cell.db_cores:.2f} "
                  f"({cell.cpu_us_per_request:.0f} us/req)", flush=True)  # fmt: skip
    sampler.stopped.set()
    sampler.join()
    target.max_rss_mib = sampler.max_bytes / 2**20
    return cells


def stop(process: subprocess.Popen[bytes] | None) -> None:
    from tests.conftest import stop_process_group

    stop_process_group(process)


# ------------------------------------------------------------------------------ targets


def creditdash_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CREDITDASH_DATABASE_URL": database_url,
        "CREDITDASH_DATA_DIR": str(data_dir),
        "CREDITDASH_ALLOW_PRIVATE_UPSTREAMS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def start_creditdash(target: Target, env: dict[str, str], tmp: Path) -> None:
    # The CLI of this checkout, whichever virtualenv runs the script (ROOT is on PYTHONPATH).
    cli = [sys.executable, "-m", "creditdash.cli"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    catalog = tmp / "catalog.yaml"
    catalog.write_text(CATALOG)
    subprocess.run([*cli, "catalog", "import", str(catalog)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    created = subprocess.run(
        [*cli, "customers", "create", "--email", "bench@example.com", "--name", "Bench",
         "--credits", "1000000", "--json"],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    customer = json.loads(created.stdout)
    keys = [customer["api_key"]]
    for number in range(1, target.customers):
        more = subprocess.run(
            [*cli, "customers", "create", "--email", f"bench{number}@example.com",
             "--name", f"Bench {number}", "--credits", "1000000", "--json"],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        keys.append(json.loads(more.stdout)["api_key"])
    if target.hard_budget:
        subprocess.run(
            [*cli, "budgets", "set", "--customer", customer["customer_id"], "--monthly", "900000",
             "--hard"],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    if len(keys) == 1:
        target.headers = [f"Authorization: Bearer {keys[0]}"]
    else:
        alternatives = tmp / "authorization.txt"
        alternatives.write_text("".join(f"Authorization: Bearer {key}\n" for key in keys))
        target.headers = [f"@{alternatives}"]
    target.paths = {mode: "/v1/chat/completions" for mode in MODES}
    target.process = subprocess.Popen(
        [*cli, "gateway", "--port", str(target.port), "--workers", str(target.workers)],
        env=env, start_new_session=True,
    )  # fmt: skip


def check_creditdash(target: Target, env: dict[str, str]) -> None:
    """Usage records must equal the 2xx answers, and the ledger must verify."""
    from sqlalchemy import create_engine, text

    engine = create_engine(env["CREDITDASH_DATABASE_URL"])
    with engine.connect() as connection:
        rows = int(connection.execute(text("SELECT count(*) FROM usage_records")).scalar_one())
    engine.dispose()
    verify = subprocess.run(
        [sys.executable, "-m", "creditdash.cli", "ledger", "verify"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    exact = "equal" if rows == target.answered_2xx else "DIFFER"
    target.check = (
        f"{rows:,} usage records for {target.answered_2xx:,} answers with status 2xx ({exact}); "
        f"ledger verify {'clean' if verify.returncode == 0 else 'FAILED: ' + verify.stdout}"
    )


def start_litellm(target: Target, tmp: Path) -> None:
    litellm = ensure_litellm()
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_CONFIG)
    env = {
        **os.environ,
        # Offline and quiet: the bundled cost map instead of fetching one; no debug logs.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_ADMIN_UI": "True",
    }
    env.pop("DATABASE_URL", None)
    target.headers = [f"Authorization: Bearer {LITELLM_KEY}"]
    target.paths = {mode: "/v1/chat/completions" for mode in MODES}
    target.process = subprocess.Popen(
        [str(litellm), "--config", str(config), "--host", "127.0.0.1", "--port",
         str(target.port), "--num_workers", str(target.workers)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=open(tmp / f"litellm-{target.port}.log", "wb"),  # noqa: SIM115
    )  # fmt: skip


def plan(only: set[str] | None) -> list[Target]:
    targets = [
        Target("direct", "direct"),
        Target("creditdash SQLite w1", "creditdash", 1, "SQLite"),
        Target("creditdash SQLite w2", "creditdash", 2, "SQLite"),
        Target("creditdash PostgreSQL w1", "creditdash", 1, "PostgreSQL"),
        Target("creditdash PostgreSQL w2", "creditdash", 2, "PostgreSQL"),
        Target("creditdash SQLite w1 hard budget", "creditdash", 1, "SQLite", hard_budget=True),
        Target(
            "creditdash PostgreSQL w1 hard budget", "creditdash", 1, "PostgreSQL", hard_budget=True
        ),
        # 16 customers: each request locks its own customer's account and one revenue shard.
        Target("creditdash SQLite w2 16 customers", "creditdash", 2, "SQLite", customers=16),
        Target(
            "creditdash PostgreSQL w1 16 customers", "creditdash", 1, "PostgreSQL", customers=16
        ),
        Target(
            "creditdash PostgreSQL w2 16 customers", "creditdash", 2, "PostgreSQL", customers=16
        ),
        Target("LiteLLM w1", "litellm", 1),
        Target("LiteLLM w2", "litellm", 2),
    ]
    for port, target in enumerate(targets, FIRST_PORT):
        if target.kind != "direct":
            target.port = port
    if only:
        targets = [t for t in targets if t.name in only or t.kind == "direct"]
    return targets


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--only", default="", help="comma-separated target names")
    parser.add_argument("--pg-settings", default=PG_SETTINGS, help="postgres -c options")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    ensure_tools()
    tmp = Path(tempfile.mkdtemp(prefix="creditdash-bench-"))
    loadgen = build_loadgen(tmp)
    bodies = {}
    for mode in MODES:
        bodies[mode] = tmp / f"{mode}.json"
        bodies[mode].write_text(json.dumps({**BODIES[mode], "messages": MESSAGES}))
    targets = plan(set(filter(None, args.only.split(","))))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    upstream = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(ROOT / "bench" / "nginx.conf")],
        start_new_session=True,
    )
    postgres = None
    cells: list[Cell] = []
    try:
        if any(t.database == "PostgreSQL" for t in targets):
            from tests.conftest import PostgresServer

            postgres = PostgresServer(args.pg_settings)
            postgres.start()
        for target in targets:
            env: dict[str, str] = {}
            db_root = None
            if target.kind == "direct":
                target.process = upstream
            elif target.kind == "creditdash":
                if target.database == "SQLite":
                    url = f"sqlite:///{tmp / f'{target.port}.db'}"
                else:
                    assert postgres is not None
                    url = postgres.new_database()
                    db_root = _postmaster(postgres.datadir)
                env = creditdash_env(url, tmp / f"data-{target.port}")
                start_creditdash(target, env, tmp)
            else:
                start_litellm(target, tmp)
            wait_ready(target.port, lambda t=target: all(post_once(t, m) for m in MODES))
            try:
                cells += measure(target, loadgen, bodies, args, db_root)
            finally:
                if target.kind != "direct":
                    stop(target.process)
            if target.kind == "creditdash":
                check_creditdash(target, env)
                print(f"{target.name}: {target.check}", flush=True)
    finally:
        stop(upstream)
        if postgres is not None:
            postgres.stop()
    report = render(cells, targets, args)
    Path(args.out).write_text(report)
    print(report)
    shutil.rmtree(tmp, ignore_errors=True)


def _postmaster(datadir: Path) -> psutil.Process | None:
    try:
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, psutil.NoSuchProcess):
        return None


# ------------------------------------------------------------------------------ report


def _version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        return (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


def _ratio(ours: Cell | None, theirs: Cell | None) -> str:
    if ours is None or theirs is None or theirs.rps == 0:
        return "-"
    ratio = ours.rps / theirs.rps
    return f"{ratio:.1f}x" if ratio >= 1 else f"{ratio:.3f}x"


def render(cells: list[Cell], targets: list[Target], args: argparse.Namespace) -> str:
    by_key = {(c.target, c.mode, c.concurrency): c for c in cells}
    workers = {t.name: t.workers for t in targets}
    kinds = {t.name: t.kind for t in targets}
    litellm_version = _version(
        [str(LITELLM_VENV / "bin" / "python"), "-c",
         "import importlib.metadata as m; print(m.version('litellm'))"]
    )  # fmt: skip
    lines = [
        "# Benchmarks",
        "",
        "The gateway against calling the upstream directly and against the LiteLLM proxy,",
        "measured in one run by `.venv/bin/python bench/run.py` (not part of `make test`). The",
        "upstream is nginx answering from memory, so it is never the bottleneck. The driver",
        "(bench/loadgen.c) keeps C requests in flight on kept-alive connections; latency is to",
        "the last byte of the answer, TTFB to its first byte. creditdash runs `creditdash gateway",
        "--workers N` with full metering on a fresh database: key lookup (cached), a hold before",
        "the upstream call, and the post plus a usage record after it, for every request.",
        f"LiteLLM {LITELLM_VERSION} runs `litellm --num_workers N` with a master key and no",
        "database (its spend tracking on PostgreSQL needs Prisma's engine binaries, which are",
        "downloaded from a host this machine cannot reach, so it could not be measured here).",
        "",
        f"- Machine: {os.cpu_count()} cores, {psutil.virtual_memory().total // 2**30} GiB, "
        f"{platform.platform()}",
        f"- Python {platform.python_version()}; {_version(['nginx', '-v'])}; LiteLLM: "
        f"{litellm_version}; PostgreSQL {_version(['psql', '--version']).split()[2]} "
        f"(`{args.pg_settings}`); SQLite WAL, synchronous=NORMAL",
        f"- {args.duration:g} s per cell after a {args.warmup:g} s warm-up; the machine is "
        "shared and noisy, so compare ratios within this run rather than numbers across runs.",
        "- CPU is in cores (1.00 = one core busy) over the whole cell, warm-up included: the "
        "server's processes, PostgreSQL's (backends started during the cell included), and "
        "the driver's.",
        "",
    ]
    for mode in MODES:
        lines += [
            f"## {'Non-streaming' if mode == 'json' else 'Streaming'}",
            "",
            "| target | C | req/s | vs direct | vs LiteLLM | p50 / p90 / p99 ms | TTFB p50 / p99 ms "
            "| added p50 / p99 ms | CPU server / db / driver | server+db CPU µs/req |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for concurrency in args.concurrency:
            direct = by_key.get(("direct", mode, concurrency))
            for target in targets:
                cell = by_key.get((target.name, mode, concurrency))
                if cell is None:
                    continue
                rival = by_key.get((f"LiteLLM w{workers[cell.target]}", mode, concurrency))
                added = (
                    f"{cell.p50_ms - direct.p50_ms:.2f} / {cell.p99_ms - direct.p99_ms:.2f}"
                    if direct and kinds[cell.target] != "direct"
                    else "-"
                )
                lines.append(
                    f"| {cell.target} | {concurrency} | {cell.rps:,.0f} "
                    f"| {_ratio(cell, direct) if kinds[cell.target] != 'direct' else '-'} "
                    f"| {_ratio(cell, rival) if kinds[cell.target] == 'creditdash' else '-'} "
                    f"| {cell.p50_ms:.2f} / {cell.p90_ms:.2f} / {cell.p99_ms:.2f} "
                    f"| {cell.ttfb_p50_ms:.2f} / {cell.ttfb_p99_ms:.2f} | {added} "
                    f"| {cell.server_cores:.2f} / {cell.db_cores:.2f} / {cell.driver_cores:.2f} "
                    f"| {cell.cpu_us_per_request:,.0f} |"
                )
        lines.append("")
    lines += ["## Memory and exactness", ""]
    for target in targets:
        if target.kind == "direct":
            continue
        line = f"- {target.name}: largest RSS of one process {target.max_rss_mib:.0f} MiB"
        lines.append(line + (f"; {target.check}." if target.check else "."))
    errors = sum(c.errors for c in cells)
    lines += ["", f"Errors and non-2xx answers across the run: {errors}.", ""]
    lines += targets_section(by_key, args, targets)
    profile = ROOT / "bench" / "profile.md"
    if profile.exists():
        lines += ["", profile.read_text().rstrip(), ""]
    return "\n".join(lines)


def targets_section(
    by_key: dict[tuple[str, str, int], Cell], args: argparse.Namespace, targets: list[Target]
) -> list[str]:
    """The issue's targets against this run's numbers (reported, not asserted anywhere)."""

    def get(name: str, mode: str, c: int) -> Cell | None:
        return by_key.get((name, mode, c))

    lines = ["## Against the targets", ""]
    c16 = 16 if 16 in args.concurrency else max(args.concurrency)
    for mode, label in (("json", "Non-streaming"), ("stream", "Streaming")):
        for w in (1, 2):
            ours, theirs = (
                get(f"creditdash SQLite w{w}", mode, c16),
                get(f"LiteLLM w{w}", mode, c16),
            )
            if ours and theirs:
                lines.append(
                    f"- {label} at C={c16}, {w} worker(s), SQLite: {ours.rps:,.0f} req/s against "
                    f"LiteLLM's {theirs.rps:,.0f}: {ours.rps / theirs.rps:.1f}x (target >= 10x)."
                )
    direct = {m: get("direct", m, 1) for m in MODES}
    for mode in MODES:
        ours, base = get("creditdash SQLite w1", mode, 1), direct[mode]
        if ours and base:
            lines.append(
                f"- Added latency at C=1, {'non-streaming' if mode == 'json' else 'streaming'}: "
                f"p50 {ours.p50_ms - base.p50_ms:.2f} ms (target <= 2), p99 "
                f"{ours.p99_ms - base.p99_ms:.2f} ms (target <= 10)."
            )
    for w in (1, 2):
        for mode in MODES:
            sq, pg = (
                get(f"creditdash SQLite w{w}", mode, c16),
                get(f"creditdash PostgreSQL w{w}", mode, c16),
            )
            if sq and pg:
                lines.append(
                    f"- PostgreSQL against SQLite, {w} worker(s), {mode}, C={c16}: "
                    f"{pg.rps / sq.rps:.2f} of the requests/s (target >= 0.70)."
                )
    for database in ("SQLite", "PostgreSQL"):
        for mode in MODES:
            plain = get(f"creditdash {database} w1", mode, c16)
            budgeted = get(f"creditdash {database} w1 hard budget", mode, c16)
            if plain and budgeted:
                lines.append(
                    f"- A hard budget on {database}, 1 worker, {mode}, C={c16}: "
                    f"{budgeted.rps / plain.rps:.2f} of the requests/s without one, "
                    f"{budgeted.cpu_us_per_request:,.0f} against {plain.cpu_us_per_request:,.0f} "
                    "µs of CPU per request."
                )
    rss = [t.max_rss_mib for t in targets if t.kind == "creditdash"]
    if rss:
        lines.append(
            f"- Largest RSS of one creditdash gateway process under load: {max(rss):.0f} MiB "
            "(target <= 150 MiB)."
        )
    return lines


if __name__ == "__main__":
    main()
