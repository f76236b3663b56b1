"""How to reach DynamoDB, apart from the client itself.

Kept free of aiobotocore so command-svc's settings (read by every replica, whatever its store) do
not import botocore: that import alone costs a second or more of start-up, and start-up time is
recovery time after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class DynamoSettings:
    endpoint_url: str | None = None
    region: str = "us-east-1"
    table_prefix: str = "cqrs-"
    retry_mode: Literal["standard", "adaptive"] = "standard"
    #: Attempts per call, the first included (botocore's `total_max_attempts`).
    max_attempts: int = 4
    timeout_seconds: float = 5.0
    max_pool_connections: int = 32
