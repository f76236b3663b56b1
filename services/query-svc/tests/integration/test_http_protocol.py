"""The service's HTTP protocol on a real loopback socket: the whole answer is in the client's first
read, and a streamed chunk arrives while its response is still open (a stream held until its end
would never show it, and the test would time out)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from query_svc.testing import serve_live

pytestmark = pytest.mark.integration


def streaming_app(release: asyncio.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/one")
    async def one() -> Response:
        return Response(b'{"a":1}', media_type="application/json")

    @app.get("/stream")
    async def stream(_request: Request) -> StreamingResponse:
        async def chunks() -> Any:
            yield b"first\n"
            await release.wait()
            yield b"second\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await reader.read(65536)
        assert chunk, f"connection closed before {marker!r}; got {data!r}"
        data += chunk
    return data


async def test_a_response_arrives_in_one_piece_and_a_stream_chunk_while_its_response_is_open() -> None:
    release = asyncio.Event()
    async with serve_live(streaming_app(release)) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /one HTTP/1.1\r\nHost: test\r\n\r\n")
            async with asyncio.timeout(10):
                first = await reader.read(65536)
            # Head and body in the first read: they left the server in one write.
            assert first.startswith(b"HTTP/1.1 200 OK\r\n")
            assert first.endswith(b'\r\n\r\n{"a":1}')
            writer.write(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
            async with asyncio.timeout(10):
                opened = await read_until(reader, b"first\n")
            assert b"second" not in opened
            release.set()
            async with asyncio.timeout(10):
                rest = await read_until(reader, b"0\r\n\r\n")
            assert b"second\n" in rest
        finally:
            writer.close()
            await writer.wait_closed()
