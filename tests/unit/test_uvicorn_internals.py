"""The uvicorn internals kernel/serving.py builds on still have the shape it uses.

serving.py runs uvicorn's own supervisor (`uvicorn.supervisors.Multiprocess`) with per-worker
sockets and subclasses `HttpToolsProtocol` to answer unparsable requests with problem+json. Neither
is public API, so pyproject pins uvicorn to the tested minor version; these tests say what changed
when a new uvicorn is tried.
"""

from __future__ import annotations

import asyncio
import inspect

import orjson
import uvicorn
from uvicorn._subprocess import get_subprocess
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from staybook.kernel.serving import PerWorkerSocket, ProblemHttpToolsProtocol

CHANGED = f"uvicorn {uvicorn.__version__}: kernel/serving.py relies on %s; adapt it, then the pin in pyproject.toml"


async def app(scope, receive, send):  # never called: the request does not parse
    raise AssertionError("unparsable requests never reach the app")


def config(**options) -> uvicorn.Config:
    return uvicorn.Config(app, workers=2, timeout_worker_healthcheck=60, **options)


def test_the_supervisor_takes_the_config_and_the_sockets_it_hands_to_each_worker():
    placeholder = PerWorkerSocket("127.0.0.1", 1)
    try:
        supervisor = inspect.signature(Multiprocess).bind(config(), sockets=[placeholder])
        inspect.signature(Process).bind(config(), [placeholder])
    except TypeError as error:
        raise AssertionError(CHANGED % "Multiprocess(config, sockets=) and Process(config, sockets)") from error
    assert set(supervisor.arguments) == {"config", "sockets"}, CHANGED % "Multiprocess(config, sockets)"
    for name in ("run", "init_processes", "restart_all"):
        assert callable(getattr(Multiprocess, name, None)), CHANGED % f"Multiprocess.{name}"
    # Each worker process is spawned with the sockets as arguments, so the placeholder is pickled into it
    # (and unpickles as a socket of the worker's own: tests/unit/test_serving.py).
    process = get_subprocess(config(), target=lambda sockets: None, sockets=[placeholder])
    assert process._kwargs["sockets"] == [placeholder], CHANGED % "get_subprocess passing the sockets to the child"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_an_unparsable_request_goes_to_send_400_response_which_answers_problem_json():
    assert callable(getattr(HttpToolsProtocol, "send_400_response", None)), CHANGED % "send_400_response"
    parameters = list(inspect.signature(HttpToolsProtocol.send_400_response).parameters)
    assert parameters == ["self", "msg"], CHANGED % "send_400_response(self, msg)"

    loaded = config(http=ProblemHttpToolsProtocol)
    loaded.load()
    assert loaded.http_protocol_class is ProblemHttpToolsProtocol, CHANGED % "Config(http=<protocol class>)"
    loop = asyncio.new_event_loop()
    try:
        state = ServerState()
        state.default_headers = [(b"x-default", b"kept")]
        protocol = ProblemHttpToolsProtocol(config=loaded, server_state=state, app_state={}, _loop=loop)
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    finally:
        loop.close()
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), CHANGED % "data_received calling send_400_response on a parse error"
    assert b"content-type: application/problem+json" in head and b"x-default: kept" in head
    assert orjson.loads(body)["status"] == 400
    assert transport.closed
