"""Local server processes that are stopped exactly: each recorded by pid AND its start time.

`Stack` is a directory holding the record (stack.json), the settings (stack.env), secrets and
logs of the processes it launched; `Process.stop` signals a pid only while it is still the
process that was started (same start time in /proc), so a reused pid or the machine's own
servers are never touched. `staybook stack` (stack.py) builds the production topology on it;
bench/chaos.py kills and relaunches its processes.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE = "stack.json"
ENV_FILE = "stack.env"


class StackError(RuntimeError):
    """A step of `up` failed; the message says which, and where its log is."""


# ---------------------------------------------------------------------------- processes


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[19])


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


@dataclass
class Process:
    """One process `up` started, as stack.json records it."""

    name: str
    pid: int
    started: int  # clock ticks since boot: with the pid, the identity of the process
    port: int | None = None
    url: str | None = None
    log: str | None = None
    # The signal that shuts it down cleanly (PostgreSQL: SIGINT, its fast shutdown).
    stop_signal: int = signal.SIGTERM
    # Started in a session of its own: the whole group (uvicorn's supervisor and its workers) goes.
    group: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return start_ticks(self.pid) == self.started

    def _signal(self, signum: int) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.group and os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)

    def stop(self, timeout: float) -> str:
        """SIGTERM (or its stop signal), then SIGKILL after `timeout` s; how it ended."""
        if not self.alive:
            return "not running"
        # PostgreSQL's backends outlive a SIGKILLed postmaster: they are killed with it.
        children = [] if self.group else children_of(self.pid)
        self._signal(self.stop_signal)
        if wait_until(lambda: not self.alive, timeout):
            return "stopped"
        self._signal(signal.SIGKILL)
        for child in children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if start_ticks(child) is not None:
                    os.kill(child, signal.SIGKILL)
        wait_until(lambda: not self.alive, 10)
        return "killed"


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (a local URL of the stack)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (OSError, urllib.error.HTTPError):
        return False


# The machine's own servers' ports (PostgreSQL, Redis, NATS, PgBouncer's default): never the stack's,
# even when one of those servers is stopped at the time.
SHARED_PORTS = frozenset({5432, 6379, 4222, 6432})


class Ports:
    """Free ports on 127.0.0.1: from `low`-`high` when given, else whatever the kernel hands out."""

    def __init__(self, spec: str | None) -> None:
        self.range: range | None = None
        if spec:
            low, _, high = spec.partition("-")
            self.range = range(int(low), int(high or low) + 1)
        self.taken: set[int] = set()

    def free(self) -> int:
        candidates = self.range if self.range is not None else [0] * 50
        for candidate in candidates:
            if candidate in self.taken or candidate in SHARED_PORTS:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
                port = probe.getsockname()[1]
            if port not in self.taken and port not in SHARED_PORTS:
                self.taken.add(port)
                return port
        raise StackError(f"no free port in {self.range}")


# ---------------------------------------------------------------------------- the stack


class Stack:
    """The stack's directory: its state file, settings, secrets, data and logs."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.logs = self.root / "logs"
        self.processes: list[Process] = []
        self.settings: dict[str, str] = {}

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    def load(self) -> bool:
        if not self.state_file.exists():
            return False
        state = json.loads(self.state_file.read_text())
        self.processes = [Process(**entry) for entry in state["processes"]]
        return True

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        state = {"root": str(self.root), "processes": [asdict(p) for p in self.processes]}
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2) + "\n")
        temporary.replace(self.state_file)

    def record(self, process: Process) -> Process:
        self.processes.append(process)
        self.save()  # at once: a failure later still leaves what to stop
        return process

    def get(self, name: str) -> Process | None:
        return next((p for p in self.processes if p.name == name), None)

    def log_file(self, name: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"{name}.log"

    def launch(
        self,
        name: str,
        command: list[str],
        *,
        port: int | None,
        env: dict[str, str] | None = None,
        url: str | None = None,
        **extra,
    ) -> Process:
        """Starts `command` in a session of its own, output to logs/<name>.log, and records it."""
        log = self.log_file(name)
        with log.open("ab") as out:
            child = subprocess.Popen(  # noqa: S603 (commands built here from installed binaries)
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=self.root, start_new_session=True,
            )  # fmt: skip
        started = start_ticks(child.pid)
        if started is None:
            raise StackError(f"{name} exited at once; see {log}")
        # The command is kept so that `relaunch` can start the same server again (same port, same data).
        extra = {**extra, "command": command}
        return self.record(Process(name, child.pid, started, port=port, url=url, log=str(log), extra=extra))

    def relaunch(self, name: str, env: dict[str, str] | None = None) -> Process:
        """Starts `name` again with the command it was launched with, after it died (a fault drill):
        the dead process's record is replaced, so `down` stops the new one."""
        old = self.get(name)
        if old is None or "command" not in old.extra:
            raise StackError(f"{name} was not launched by this stack")
        if old.alive:
            raise StackError(f"{name} (pid {old.pid}) is still running")
        self.processes.remove(old)
        extra = {k: v for k, v in old.extra.items() if k != "command"}
        return self.launch(name, old.extra["command"], port=old.port, env=env, url=old.url, **extra)

    def replace(self, process: Process) -> Process:
        """Records `process` in place of the one of the same name (a server restarted by its own tool)."""
        self.processes = [p for p in self.processes if p.name != process.name]
        return self.record(process)

    def secrets(self) -> dict[str, str]:
        """The stack's secrets, generated on its first `up` and kept (0600)."""
        path = self.root / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        values = {
            "secret_key": secrets.token_urlsafe(48),
            "webhook_secret": secrets.token_urlsafe(48),
            "metrics_token": secrets.token_urlsafe(32),
            "pii_master_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "email_hash_key": secrets.token_urlsafe(32),
            "typesense_api_key": secrets.token_urlsafe(24),
        }
        self.root.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(json.dumps(values, indent=2) + "\n")
        return values

    def write_env(self) -> Path:
        path = self.root / ENV_FILE
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text("".join(f"{key}={shell_quote(value)}\n" for key, value in sorted(self.settings.items())))
        return path

    def stop_all(self, timeout: float, echo: Callable[[str], None]) -> None:
        """Stops every recorded process, the last started first."""
        for process in reversed(self.processes):
            outcome = process.stop(timeout)
            echo(f"{process.name:<11} pid {process.pid:<8} {outcome}")


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin") if (p := Path(d) / name).exists()), None
    )
    if found is None:
        raise StackError(f"{name} not found: install the Debian package {package} (scripts/stack does)")
    return found
