"""Test support shipped with the projector: event histories, an independent fold, Kafka and view I/O.

Used by the projector's integration tests, the end-to-end tests, the CLI tests and the benchmark.
Nothing here is imported by the running service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from projector_svc.service import ProjectorService

#: The signature of the tests' `start_projector` fixture: start one in-process replica.
StartProjector: TypeAlias = "Callable[..., Awaitable[ProjectorService]]"
