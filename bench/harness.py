"""What every staybook benchmark shares: start servers on 127.0.0.1, drive them with
`bench/loadgen.py` in its own process, and write `bench/results/<name>.json`.

    from bench.harness import Server, load, write_result
    with Server(["staybook", "serve"], env={...}) as server:
        ceiling = load(server.url, path="/healthz/live", rate=0, duration=10)     # closed loop
        measured = load(server.url, path="/healthz/live", rate=2000, duration=10)  # open loop

Every result file records the machine, the git commit and the ceiling measured in the same run.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
VENV_BIN = Path(sys.executable).parent


# All load comes from one loopback address: the gateway's per-IP limit (2,000 per 5 minutes)
# would turn a benchmark into a rate-limit test. Benchmarks that measure the limit set their own.
BENCH_ENV = {"STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def uvicorn_command(app: str, *extra: str, factory: bool = True) -> list[str]:
    """uvicorn as production runs it (uvloop, httptools, no access log) on `{port}` of 127.0.0.1."""
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--port",
        "{port}",
        "--host",
        "127.0.0.1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
        *extra,
    ]
    return [*command, "--factory", app] if factory else [*command, app]


def serving_command(app: str, *extra: str, factory: bool = True) -> list[str]:
    """Several workers as `staybook serve` runs them: one SO_REUSEPORT socket each (kernel/serving.py)."""
    command = [sys.executable, "-m", "staybook.kernel.serving", "--host", "127.0.0.1", "--port", "{port}", *extra]
    return [*command, "--factory", app] if factory else [*command, app]


def staybook_command(*args: str) -> list[str]:
    return [str(VENV_BIN / "staybook"), *args]


class Server:
    """A server subprocess on a free port; waits until `health_path` answers 200, killed on exit."""

    def __init__(
        self,
        command: list[str],
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        health_path: str = "/healthz/live",
        cpu: int | None = None,
        startup_timeout: float = 120,
        cwd: Path = ROOT,
    ) -> None:
        self.port = port or free_port()
        self.command = [part.replace("{port}", str(self.port)) for part in command]
        self.env = {**os.environ, **BENCH_ENV, **(env or {})}
        self.health_path = health_path
        self.cpu = cpu
        self.startup_timeout = startup_timeout
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(prefix="staybook-bench-", suffix=".log", delete=False)  # noqa: SIM115

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        preexec = (lambda: os.sched_setaffinity(0, {self.cpu})) if self.cpu is not None else None
        self.process = subprocess.Popen(
            self.command, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec, cwd=self.cwd
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"server exited early; log: {self.log.name}\n{Path(self.log.name).read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise TimeoutError(f"server did not become healthy; log: {self.log.name}")

    def __exit__(self, *_exc) -> None:
        if self.process and self.process.poll() is None:
            stop_process(self.process, timeout=15)


def stop_process(process: subprocess.Popen, *, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; reaps it either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def load(
    url: str,
    *,
    path: str = "/",
    requests: list[dict] | None = None,
    rate: float = 0,
    duration: float = 10,
    connections: int = 32,
    cpu: int | None = None,
) -> dict:
    """Runs bench/loadgen.py in its own process and returns its figures (see its docstring)."""
    command = [
        sys.executable,
        # As a module from the root: run as a script, bench/ would come first on sys.path and
        # bench/platform.py would shadow the standard library's platform module.
        "-m",
        "bench.loadgen",
        url,
        "--path",
        path,
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--connections",
        str(connections),
    ]
    spec_file = None
    if requests is not None:
        spec_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)  # noqa: SIM115
        json.dump(requests, spec_file)
        spec_file.close()
        command += ["--requests", spec_file.name]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120, cwd=ROOT)
        if output.returncode != 0:
            raise RuntimeError(f"load generator exited {output.returncode}: {output.stderr.strip()[-2000:]}")
    finally:
        if spec_file is not None:
            os.unlink(spec_file.name)
    return json.loads(output.stdout.strip().splitlines()[-1])


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        # Load when the result was written: a figure taken beside other work says so here.
        "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def write_result(name: str, result: dict) -> Path:
    """Writes bench/results/<name>.json with the run's context; returns the path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "machine": machine(),
        **result,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def ratio(measured: float, ceiling: float) -> float:
    return round(measured / ceiling, 4) if ceiling else 0.0


def print_table(rows: list[tuple[str, dict]]) -> None:
    print(f"{'case':<34} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} {'errors':>7}")
    for label, figures in rows:
        lat = figures["latency_ms"]
        print(
            f"{label:<34} {figures['throughput_rps']:>10.1f} {lat['p50']:>9.3f} {lat['p99']:>9.3f} "
            f"{lat['p99.9']:>9.3f} {figures['errors']:>7}"
        )
