"""Several API workers each get their own listening socket on the same port (SO_REUSEPORT)."""

from __future__ import annotations

import pickle
import socket

import pytest

from staybook.kernel.serving import PerWorkerSocket

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="needs SO_REUSEPORT")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_worker_unpickles_its_own_socket_on_the_shared_port():
    port = free_port()
    placeholder = PerWorkerSocket("127.0.0.1", port)
    # What uvicorn's supervisor hands to each worker it spawns.
    first, second = (pickle.loads(pickle.dumps(placeholder)) for _ in range(2))
    try:
        assert first.fileno() != second.fileno()
        for sock in (first, second):
            assert sock.getsockname() == ("127.0.0.1", port)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
            sock.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted by one of the two listening sockets' queues
    finally:
        first.close()
        second.close()


def test_a_port_held_without_reuse_port_is_refused():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(OSError):
            pickle.loads(pickle.dumps(PerWorkerSocket("127.0.0.1", holder.getsockname()[1])))
