"""A TCP proxy that tests put between a client and a server, to cut or stall the link on demand.

`cut()` drops every connection and stops listening (a dead link: resets, then refused
connections); `stall()` stops passing bytes on in both directions while connections stay open
(half-open TCP: nothing is refused, nothing answers), both until `restore()`. `hold_eof` delays
passing on the server's close after its last bytes, which opens the window in which a client has
read a server's final message but not yet its EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """Forwards `127.0.0.1:port` to `upstream_port`, with faults the test controls."""

    def __init__(self, upstream_port: int, *, hold_eof: float = 0.0) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        #: Seconds between the server closing a connection and the proxy closing it to the client.
        self.hold_eof = hold_eof
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Future[None]] = set()
        self._transports: set[asyncio.WriteTransport] = set()
        self._cutting = asyncio.Event()
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: Connections whose server side has closed while the proxy holds back the EOF.
        self.holding = 0

    def dsn(self, dsn: str) -> str:
        """`dsn` (a URL naming 127.0.0.1:upstream_port, such as PostgreSQL's or MongoDB's) routed
        through the proxy."""
        return dsn.replace(f":{self.upstream_port}/", f":{self.port}/")

    async def start(self) -> None:
        self._cutting.clear()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening (connections are refused) and reset every connection open now."""
        self._cutting.set()
        self._flowing.set()  # a stalled pump finds its sink aborted and ends
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        await asyncio.gather(*self._links, return_exceptions=True)

    def stall(self) -> None:
        """Stop passing bytes on, in both directions and on new connections, until `restore()`."""
        self._flowing.clear()

    async def restore(self) -> None:
        """Listen again after a cut, and pass bytes on again after a stall."""
        self._flowing.set()
        if self._server is None:
            await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        done = asyncio.get_running_loop().create_future()
        self._links.add(done)
        try:
            await self._link(client_reader, client_writer)
        finally:
            self._links.discard(done)
            done.set_result(None)

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._transports.add(client_writer.transport)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._transports.discard(client_writer.transport)
            client_writer.transport.abort()
            return
        self._transports.add(upstream_writer.transport)
        try:
            await asyncio.gather(
                self._pump(client_reader, upstream_writer, from_server=False),
                self._pump(upstream_reader, client_writer, from_server=True),
            )
        finally:
            for writer in (client_writer, upstream_writer):
                self._transports.discard(writer.transport)
                writer.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, sink: asyncio.StreamWriter, *, from_server: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        if from_server and self.hold_eof:
            self.holding += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.hold_eof):
                        await self._cutting.wait()
            finally:
                self.holding -= 1
        sink.close()
