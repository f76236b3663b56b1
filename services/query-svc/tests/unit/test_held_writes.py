"""The service's HTTP protocol holds a response's writes and sends them as one; a fake transport
records what reaches it (the real socket: tests/integration/test_http_protocol.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from query_svc.http_protocol import HeldWrites


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


def held(transport: FakeTransport) -> HeldWrites:
    return HeldWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]  # a fake with what is used


async def test_writes_are_held_and_sent_as_one_on_flush() -> None:
    transport = FakeTransport()
    writes = held(transport)
    writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
    writes.write(b"{}")
    assert transport.writes == []
    assert writes.get_write_buffer_size() == 21
    writes.flush()
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]


async def test_what_nobody_flushes_goes_out_at_the_end_of_the_loop_iteration() -> None:
    transport = FakeTransport()
    writes = held(transport)
    writes.write(b"data: 1\n\n")
    await asyncio.sleep(0)
    assert transport.writes == [b"data: 1\n\n"]
    writes.write(b"data: 2\n\n")
    await asyncio.sleep(0)
    assert transport.writes == [b"data: 1\n\n", b"data: 2\n\n"]


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    closing, aborting = FakeTransport(), FakeTransport()
    writes = held(closing)
    writes.write(b"last words")
    writes.close()
    assert closing.writes == [b"last words"]
    assert closing.closed
    dropped = held(aborting)
    dropped.write(b"never sent")
    dropped.abort()
    await asyncio.sleep(0)
    assert aborting.writes == []
    assert aborting.aborted
    assert dropped.get_extra_info("peername") == "extra peername"
