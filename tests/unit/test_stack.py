"""`staybook stack`'s bookkeeping: a recorded process is stopped only while it is the one started."""

from __future__ import annotations

import signal
import subprocess
import sys

from staybook.processes import SHARED_PORTS, Ports, Process, start_ticks


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_a_reused_pid_is_never_signalled():
    child = sleeper()
    try:
        started = start_ticks(child.pid)
        # The same pid with another start time: what stack.json holds after the pid was reused.
        stale = Process("api", child.pid, started - 1)
        assert not stale.alive
        assert stale.stop(timeout=1) == "not running"
        assert child.poll() is None  # still running: not ours to stop
        recorded = Process("api", child.pid, started)
        assert recorded.alive
        assert recorded.stop(timeout=10) == "stopped"
        assert child.wait(timeout=10) == -signal.SIGTERM
        assert not recorded.alive
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_process_that_ignores_sigterm_is_killed():
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        recorded = Process("worker", child.pid, start_ticks(child.pid))
        assert child.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
        assert recorded.stop(timeout=1) == "killed"
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_ports_come_from_the_range_and_never_the_shared_servers():
    ports = Ports("4222-4223")
    assert ports.free() == 4223  # 4222 is NATS's, even when nothing listens there
    wide = Ports("16400-16499")
    picked = {wide.free() for _ in range(5)}
    assert len(picked) == 5 and all(16400 <= port <= 16499 for port in picked)
    assert not picked & SHARED_PORTS
