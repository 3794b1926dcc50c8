"""An HTTP endpoint on a free port that keeps every request posted to it: where the payment
providers' tests have real webhook deliveries sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class Receiver:
    """An HTTP endpoint on a free port that keeps every request posted to it."""

    url: str = ""
    requests: asyncio.Queue[tuple[bytes, dict[str, str]]] = field(default_factory=asyncio.Queue)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        await self.requests.put((body, headers))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
        await writer.drain()
        writer.close()

    async def next(self, seconds: float = 15.0) -> tuple[bytes, dict[str, str]]:
        return await asyncio.wait_for(self.requests.get(), seconds)


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver()
    server = await asyncio.start_server(box.handle, "127.0.0.1", 0)
    box.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield box
        server.close()
