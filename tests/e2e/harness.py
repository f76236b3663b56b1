"""The end-to-end stack: the three services started by the fixtures in `conftest.py`."""

from __future__ import annotations

from dataclasses import dataclass

from cqrs_shared.auth import mint_token
from cqrs_shared.testing.service_processes import AUDIENCE, E2E_SECRET, ISSUER, ServiceProcess


@dataclass
class Stack:
    command: ServiceProcess
    projector: ServiceProcess
    query: ServiceProcess
    topic_prefix: str
    mongodb_database: str
    database_url: str

    def token(self, *roles: str) -> str:
        return "Bearer " + mint_token(
            E2E_SECRET, subject="e2e", roles=list(roles), issuer=ISSUER, audience=AUDIENCE
        )
