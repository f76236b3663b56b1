"""IAM database authentication tokens from aiobotocore's RDS signer (the `cqrs-shared[aws]` extra).

A token is a SigV4-presigned `connect` request for one host, port and user, valid 15 minutes;
signing needs credentials but no network call (credentials come from the standard chain:
environment, web identity / IRSA, the Lambda's role, instance metadata, and are cached and
refreshed by the session). aiobotocore is imported when a signer is built, never at module import,
so a service without the extra starts and only `DATABASE_IAM_AUTH=true` asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cqrs_shared.postgres_connect import DatabaseConfigError

if TYPE_CHECKING:
    from aiobotocore.session import AioSession

_MISSING = (
    "DATABASE_IAM_AUTH=true needs aiobotocore, which this installation lacks: install the `aws` extra "
    "(cqrs-shared[aws], or projector-svc[aws] / query-svc[aws]), or turn IAM authentication off"
)


def _session() -> AioSession:
    try:
        from aiobotocore.session import get_session  # the optional extra: see the module docstring
    except ImportError as exc:
        raise DatabaseConfigError(_MISSING) from exc
    return get_session()


class RdsTokenSigner:
    """Signs with the AWS credentials of the process for `region` (DATABASE_IAM_REGION, AWS_REGION,
    or the AWS config's region). Raises `DatabaseConfigError` without aiobotocore or a region."""

    def __init__(self, region: str | None = None) -> None:
        self._session = _session()
        self.region = region or self._session.get_config_variable("region")
        if not self.region:
            raise DatabaseConfigError(
                "DATABASE_IAM_AUTH=true needs the database's region: set DATABASE_IAM_REGION or AWS_REGION"
            )

    async def token(self, host: str, port: int, user: str) -> str:
        # A client is only a signing context here (no request is sent); the session keeps the
        # credentials, so building one per token costs no credential lookup.
        async with self._session.create_client("rds", region_name=self.region) as rds:
            return await rds.generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
