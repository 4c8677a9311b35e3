"""Load test of `reportgen serve` on loopback: latency, throughput and server memory, with/without batching.

For each ``--max-batch-size`` value it starts a fresh server (127.0.0.1, a free port, no auth, a temporary
job database), waits for /readyz, then runs ``--concurrency`` asyncio httpx clients that each POST one
synthetic study after another (sync mode) for ``--duration`` seconds, and prints p50/p95 latency,
studies/s, errors and the server's peak resident memory.

    python benchmarks/api_load.py --checkpoint checkpoints/<name>            # 32 clients, 60 s, batch 1 vs 8
    python benchmarks/api_load.py --checkpoint tiny --duration 20            # a tiny random checkpoint

Only loopback is used; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


@dataclass
class RunResult:
    max_batch_size: int
    latencies_s: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0

    def row(self) -> str:
        lat = sorted(self.latencies_s)
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] * 1000 if lat else float("nan")
        rate = len(lat) / self.wall_s if self.wall_s else 0.0
        errs = sum(self.errors.values())
        detail = ",".join(f"{k}:{v}" for k, v in sorted(self.errors.items())) or "-"
        return (
            f"{self.max_batch_size:>10} {len(lat):>8} {rate:>10.2f} {p50:>9.0f} {p95:>9.0f} {errs:>7} "
            f"{self.peak_rss_mb:>10.0f}  {detail}"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB, from /proc (Linux); 0 when unavailable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler(threading.Thread):
    """Samples a process's RSS every ``interval_s`` and keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s, self.peak = pid, interval_s, 0.0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            self._stop_event.wait(self.interval_s)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def start_server(
    checkpoint: str, port: int, db: Path, max_batch_size: int, max_wait_ms: float, torch_threads: int | None
) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "reportgen.api.serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--checkpoint",
        checkpoint,
        "--db",
        f"sqlite:///{db}",
        "--insecure-no-auth",
        "--max-batch-size",
        str(max_batch_size),
        "--max-wait-ms",
        str(max_wait_ms),
        "--log-level",
        "warning",
    ]
    if torch_threads:
        cmd += ["--torch-threads", str(torch_threads)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(db.with_suffix(".log"), "w")  # noqa: SIM115 - closed with the process by the OS
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def wait_ready(proc: subprocess.Popen, base: str, timeout_s: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"server not ready after {timeout_s:.0f} s:\n{log.read_text()[-2000:]}")


async def load(base: str, study: list[tuple[str, bytes]], concurrency: int, duration_s: float, res: RunResult) -> None:
    import httpx

    deadline = time.monotonic() + duration_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                files = [("files", (name, data, "application/octet-stream")) for name, data in study]
                t0 = time.perf_counter()
                try:
                    r = await client.post("/v1/reports", files=files)
                    ok = r.status_code == 200
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    ok, key = False, type(exc).__name__
                if ok:
                    res.latencies_s.append(time.perf_counter() - t0)
                else:
                    res.errors[key] = res.errors.get(key, 0) + 1

        t_start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        res.wall_s = time.monotonic() - t_start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="api_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="checkpoint folder, or 'tiny' for a tiny random one")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load per configuration")
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated --max-batch-size values to compare")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--images-per-study", type=int, default=1, choices=[1, 2, 3, 4])
    p.add_argument("--image-size", type=int, default=512, help="side of the synthetic PNGs (pixels)")
    p.add_argument("--torch-threads", type=int, default=None, help="passed to the server (default: torch's)")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    args = p.parse_args(argv)

    from reportgen.testing import make_png

    with tempfile.TemporaryDirectory(prefix="reportgen-load-") as tmp:
        tmpdir = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint == "tiny":
            from reportgen.training.tiny import make_tiny_checkpoint

            checkpoint = str(make_tiny_checkpoint(tmpdir / "tiny"))
        study = [
            (f"{i}.png", make_png(tmpdir / f"{i}.png", size=(args.image_size,) * 2, seed=i).read_bytes())
            for i in range(args.images_per_study)
        ]
        results = []
        for bs in [int(b) for b in args.batch_sizes.split(",")]:
            port = free_port()
            base = f"http://{HOST}:{port}"
            db = tmpdir / f"jobs-{bs}.db"
            proc = start_server(checkpoint, port, db, bs, args.max_wait_ms, args.torch_threads)
            try:
                wait_ready(proc, base, args.ready_timeout, db.with_suffix(".log"))
                sampler = RssSampler(proc.pid)
                sampler.start()
                res = RunResult(max_batch_size=bs)
                asyncio.run(load(base, study, args.concurrency, args.duration, res))
                res.peak_rss_mb = sampler.stop()
                results.append(res)
                print(f"max_batch_size={bs}: {len(res.latencies_s)} studies in {res.wall_s:.1f} s", file=sys.stderr)
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()

    print(
        f"\ncheckpoint={args.checkpoint} concurrency={args.concurrency} duration={args.duration:.0f}s "
        f"images/study={args.images_per_study} image={args.image_size}px max_wait_ms={args.max_wait_ms:g} "
        f"torch_threads={args.torch_threads or 'default'} cpus={os.cpu_count()}"
    )
    header = ("batch_size", 10), ("studies", 8), ("studies/s", 10), ("p50_ms", 9), ("p95_ms", 9), ("errors", 7)
    print(" ".join(f"{name:>{width}}" for name, width in header) + f" {'peak_rss_mb':>10}  error_codes")
    for res in results:
        print(res.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
