"""The projector's build schemas outside a running projector, for tests of what reads or operates on
them (query-svc's tests build the real `read.*` relations with these, the CLI's tests take the
rebuild lock, end-to-end tests finish a retired build)."""

from __future__ import annotations

from projector_svc.builds import LOCK_NAMESPACE, Build, activate, create_build, ensure_active_build
from projector_svc.pg import create_pool
from projector_svc.rebuild import catch_up

__all__ = [
    "LOCK_NAMESPACE",
    "Build",
    "activate",
    "catch_up",
    "create_build",
    "create_pool",
    "ensure_active_build",
]
