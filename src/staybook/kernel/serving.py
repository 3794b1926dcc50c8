"""Serving the ASGI app with several uvicorn worker processes, each on its own listening socket.

uvicorn's `--workers` shares one listening socket between its workers: whichever worker
wakes first accepts, so long-lived keep-alive connections end up unevenly spread (measured
40/24, 49/15 and 47/17 of 64 connections on two workers). A client or proxy that spreads its
requests over its connections then overloads one worker while the other idles, and the tail
latency is that worker's queue. Here each worker binds its own socket with `SO_REUSEPORT`
(Linux), and the kernel spreads new connections over them by a hash of the addresses.

uvicorn's supervisor still runs the workers (health checks, restarts, signals): the socket
handed to it pickles into a fresh `SO_REUSEPORT` socket in each worker process it spawns.
The supervisor and the httptools protocol subclassed below are uvicorn internals: pyproject pins
uvicorn to the tested minor version, and tests/unit/test_uvicorn_internals.py checks their shape.

    python -m staybook.kernel.serving staybook.app:create_app --factory --workers 2 --port 8000
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from staybook.kernel.errors import PROBLEM_BASE


def reuse_port_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class PerWorkerSocket:
    """Stands in for the listening socket in the supervisor; unpickles (in a worker) as a new one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple:
        return (reuse_port_socket, (self.host, self.port))


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, answering a request it cannot parse (a bad Content-Length, a
    malformed request line) with a problem+json body like every other refusal, not plain text."""

    def send_400_response(self, msg: str) -> None:
        body = orjson.dumps(
            {
                "type": PROBLEM_BASE + "bad-request",
                "title": "Bad request",
                "status": 400,
                "detail": msg,
            }
        )
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.append(b"content-type: application/problem+json\r\n")
        head.append(b"content-length: " + str(len(body)).encode("ascii") + b"\r\n")
        head.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def serve(app: Any, *, workers: int, host: str, port: int, **options: Any) -> None:
    """`uvicorn.run` with per-worker `SO_REUSEPORT` sockets when there are several workers.

    `app` is an import string ("staybook.app:create_app", needed for several workers) or an app.
    uvicorn's proxy headers are always off: by default they believe `X-Forwarded-For` from
    127.0.0.1, so every local client could pick its address. The gateway reads forwarding headers,
    from `gateway.trusted_proxies` only (kernel/gateway.py).
    """
    options["proxy_headers"] = False
    options["http"] = ProblemHttpToolsProtocol
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, host=host, port=port, workers=workers, **options)
        return
    config = uvicorn.Config(app, host=host, port=port, workers=workers, **options)
    # Fail here, not in every worker, when the port is taken by something else.
    reuse_port_socket(host, port).close()
    Multiprocess(config, sockets=[PerWorkerSocket(host, port)]).run()  # type: ignore[list-item]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app")
    parser.add_argument("--factory", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--timeout-worker-healthcheck", type=int, default=5)
    args = parser.parse_args()
    serve(
        args.app,
        factory=args.factory,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
        timeout_worker_healthcheck=args.timeout_worker_healthcheck,
    )


if __name__ == "__main__":
    main()
