"""The compose healthcheck of the stream publisher process, which serves no HTTP (`/readyz`).

Healthy means what the publishers themselves go by: this member's heartbeat in the leases table is
live (`live_members`, the list every publisher shares the stream's shards by). The publisher renews
it every third of `COMMAND_SVC_RELAY_LEASE_TTL_SECONDS`, so a wedged or cut-off publisher drops out
within one TTL. Reads command-svc's own settings (`COMMAND_SVC_INSTANCE_ID`, the DynamoDB ones), so
it checks the member the publisher registers. Mounted read-only into the command-svc image by
docker-compose.aws-like.yml.
"""

from __future__ import annotations

import asyncio
import sys

from command_svc.settings import CommandServiceSettings
from command_svc.write_store.dynamo_store import DynamoWriteStore
from cqrs_shared.write_store import WriteStoreUnavailableError


async def live_members(settings: CommandServiceSettings) -> list[str]:
    store = await DynamoWriteStore.open(settings.dynamo())
    try:
        return await store.leases().live_members()
    finally:
        await store.close()


def main() -> int:
    settings = CommandServiceSettings()
    try:
        members = asyncio.run(live_members(settings))
    except WriteStoreUnavailableError as exc:
        # One line for `docker inspect`'s health log rather than a traceback.
        sys.stderr.write(f"stream publisher {settings.instance_id!r}: leases table unreadable: {exc}\n")
        return 1
    if settings.instance_id in members:
        return 0
    sys.stderr.write(f"stream publisher {settings.instance_id!r} has no live heartbeat (live: {members})\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
