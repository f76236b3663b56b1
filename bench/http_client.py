"""A lean keep-alive HTTP/1.1 GET client for the benchmarks: one asyncio protocol per connection.

A load tool's own CPU counts against what it measures on a machine whose cores it shares with the
service, so this one does the least a correct client can: the request is the path spliced between
prebuilt bytes, the answer is read straight from the protocol's `data_received` (no stream reader,
no per-request header objects), and the only parsing is the status code and `Content-Length`.
One request at a time per connection (no pipelining), as a browser or a service client sends
them. Responses without a length (chunked, or an early close) are refused as errors rather than
guessed at: every route the benchmarks call answers with a `Content-Length`.
"""

from __future__ import annotations

import asyncio

_HEAD_END = b"\r\n\r\n"
_LENGTH = b"\r\ncontent-length:"


class HttpError(OSError):
    """The connection failed or the server answered something this client does not read."""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a TCP connection's is a Transport

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        end = buffer.find(_HEAD_END)
        if end < 0 or self._waiter is None:
            return
        head = bytes(buffer[:end]).lower()
        at = head.find(_LENGTH)
        if at < 0:
            if b"\r\ntransfer-encoding:" in head:
                self._fail(HttpError("a response without Content-Length (chunked) is not supported"))
                return
            length = 0
        else:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + len(_LENGTH) : stop if stop >= 0 else None])
        total = end + 4 + length
        if len(buffer) < total:
            return
        status = int(head[9:12])
        del buffer[:total]
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result(status)

    def _fail(self, exc: Exception) -> None:
        self._lost = exc
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self._waiter = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(HttpError(f"connection closed: {exc}" if exc else "connection closed by the server"))

    def request(self, data: bytes) -> asyncio.Future[int]:
        if self._lost is not None or self.transport is None:
            raise HttpError("the connection is closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


class KeepAliveClient:
    """One persistent connection to `host:port`: `get(path)` sends a GET with `headers` and answers
    its status once the whole body has arrived; any failure leaves the client closed (`HttpError`)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._address = (host, port)
        fields = {"Host": f"{host}:{port}", **headers}
        self._tail = (" HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()
        self._connection: _Connection | None = None

    async def get(self, target: str) -> int:
        connection = self._connection
        if connection is None:
            _, connection = await asyncio.get_running_loop().create_connection(_Connection, *self._address)
            self._connection = connection
        try:
            return await connection.request(b"GET " + target.encode() + self._tail)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and connection.transport is not None:
            connection.transport.close()
