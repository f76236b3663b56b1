"""The one command pipeline behind both doors (Kafka topic and HTTP).

decode -> validate -> authorize -> answer a repeat -> load state -> decide -> store atomically -> hand
the commit to the relay. Every command that is a command gets exactly one outcome; input that is not
even a command (not JSON, no command id) is reported as `DeadLetter` for the door to dead-letter.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from command_svc.domain.decider import AggregateDefinition, AggregateNotFoundError, RuleViolationError
from command_svc.head_cache import HeadCache
from command_svc.intake import DeadLetter, decode, field_errors, invalid, reject
from command_svc.keyed_locks import KeyedLocks
from command_svc.metrics import CONFLICTS_RETRIED, IDEMPOTENT_REPEATS, STORE_SECONDS
from command_svc.registry import CommandRegistry, CommandRoute
from cqrs_shared.auth import AuthError, TokenVerifier
from cqrs_shared.consistency import ConsistencyToken
from cqrs_shared.envelopes import CommandEnvelope, EventEnvelope, utc_now
from cqrs_shared.logging_setup import bind_ids
from cqrs_shared.results import Accepted, CommandResult, FieldError, Rejected, RejectionCode
from cqrs_shared.tracing import current_carrier, span
from cqrs_shared.write_store import (
    Commit,
    CommitTooLargeError,
    ConcurrencyConflictError,
    DuplicateCommandError,
    WriteStore,
    WriteStoreUnavailableError,
    shard_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class IntakePausedError(WriteStoreUnavailableError):
    """New commands wait: storing more now would starve what publishes the stored ones.

    A subclass of the store being unavailable, because every door already answers that the right
    way (HTTP 503 with Retry-After, the topic door reads the command again later); unlike a failed
    write, nothing was attempted, so the outcome is known: nothing happened.
    """


class CommandPipeline:
    def __init__(
        self,
        registry: CommandRegistry,
        store: WriteStore,
        verifier: TokenVerifier,
        *,
        on_commit: Callable[[Commit], None] = lambda _commit: None,
        relay_shards: int = 64,
        max_attempts: int = 5,
        head_cache_size: int = 10_000,
        intake_paused: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._registry = registry
        self._store = store
        self._verifier = verifier
        self._on_commit = on_commit
        self._relay_shards = relay_shards
        self._max_attempts = max_attempts
        self._intake_paused = intake_paused
        # Serialising one aggregate's commands inside a process turns most races into queueing;
        # the store's unique key still decides between processes.
        self._locks = KeyedLocks()
        # Heads this process wrote or read. Safe to trust for a commit, because storing on a stale
        # head collides on its (aggregate, base version) key; never trusted for a rejection.
        self._heads = HeadCache(head_cache_size)

    async def handle(
        self, raw: bytes | Mapping[str, Any], authorization: str | None
    ) -> CommandResult | DeadLetter:
        decoded = decode(raw)
        if isinstance(decoded, DeadLetter):
            return decoded
        try:
            envelope = CommandEnvelope.model_validate(decoded)
        except ValidationError as exc:
            return invalid(decoded, "the command envelope is invalid", field_errors(exc))
        with (
            bind_ids(correlation_id=envelope.correlation_id, causation_id=envelope.metadata.causation_id),
            span(
                f"handle {envelope.type}",
                attributes={
                    "cqrs.command_id": str(envelope.command_id),
                    "cqrs.command_type": envelope.type,
                    "cqrs.aggregate_id": envelope.aggregate_id,
                    "cqrs.correlation_id": envelope.correlation_id,
                },
            ),
        ):
            return await self._handle_envelope(envelope, authorization)

    async def _handle_envelope(self, envelope: CommandEnvelope, authorization: str | None) -> CommandResult:
        route = self._registry.route(envelope.type)
        if route is None:
            return reject(
                envelope,
                RejectionCode.INVALID,
                f"unknown command type {envelope.type!r}",
                [FieldError(loc="type", message="unknown command type", type="unknown_command_type")],
            )
        try:
            payload = route.payload_model.model_validate(envelope.payload)
        except ValidationError as exc:
            return reject(
                envelope, RejectionCode.INVALID, "the payload is invalid", field_errors(exc, "payload")
            )
        try:
            self._verifier.verify(authorization).require(route.payload_model.REQUIRED_ROLE)
        except AuthError as exc:
            code = RejectionCode.FORBIDDEN if exc.forbidden else RejectionCode.UNAUTHORIZED
            return reject(envelope, code, exc.message)
        if (reason := self._intake_paused()) is not None:
            raise IntakePausedError(reason)
        async with self._locks.hold(f"{route.aggregate.aggregate_type}/{envelope.aggregate_id}"):
            return await self._decide_and_store(envelope, route, payload)

    async def _decide_and_store(
        self, envelope: CommandEnvelope, route: CommandRoute, payload: BaseModel
    ) -> CommandResult:
        # A repeat is not looked up first: storing its outcome collides on the command id, and the
        # store answers with the outcome it already has (one store call per new command instead of
        # two). Only a decision that stores nothing has to ask. Nor is the head of an aggregate this
        # process knows nothing of: it is guessed absent (see `HeadCache`), so a command creating
        # an aggregate costs one store call, the insert of its commit.
        aggregate = route.aggregate
        fresh = False
        # The command's span, stored with the commit: the relay's publish continues from it.
        trace_context = current_carrier()
        races = 0
        while races < self._max_attempts:
            head, confirmed = await self._head(aggregate.aggregate_type, envelope.aggregate_id, fresh=fresh)
            version = head.version if head else 0
            related = await self._related(aggregate, payload)
            with span("decide"):
                decision = self._decide(envelope, aggregate, payload, head, related, trace_context)
            if isinstance(decision, Accepted):
                # Decided that nothing changes, so nothing is stored and nothing collides: a repeat
                # must be recognised here, or it would be answered with today's version.
                previous = await self._previous_outcome(envelope.command_id)
                if previous is not None:
                    IDEMPOTENT_REPEATS.inc()
                return previous or decision
            if isinstance(decision, Rejected):
                if not confirmed:
                    # A cached or guessed head may be stale; a rejection is final, so confirm it on
                    # fresh state.
                    fresh = True
                    continue
                stored = await self._timed(self._store.record_rejection(decision))
                if stored != decision:
                    # The id already had another outcome (a repeat decided again on newer state);
                    # a repeat that is rejected the same way again cannot be told apart, nor need be.
                    IDEMPOTENT_REPEATS.inc()
                return stored
            try:
                with span("store commit", attributes={"cqrs.commit_id": decision.commit_id}):
                    await self._timed(self._store.append(decision))
            except DuplicateCommandError as exc:
                IDEMPOTENT_REPEATS.inc()
                return exc.existing
            except CommitTooLargeError as exc:
                if not confirmed:
                    # Decided on a cached or guessed head: the size check comes before the store
                    # could see a collision, and the stored head may decide otherwise.
                    fresh = True
                    continue
                # Final: the same decision would be as large again.
                return await self._record(envelope, RejectionCode.INVALID, str(exc))
            except ConcurrencyConflictError:
                self._heads.forget(aggregate.aggregate_type, envelope.aggregate_id)
                fresh = True
                if not confirmed:
                    # Decided on a cached or guessed head that was stale: no race lost (nor a
                    # version the sender expected taken), decide again on the stored head.
                    continue
                if envelope.expected_version is not None:
                    message = f"version {version} was taken by a concurrent command"
                    return await self._record(envelope, RejectionCode.CONFLICT, message)
                races += 1
                CONFLICTS_RETRIED.inc()
                log.info("lost a race on %s at version %d; retrying", decision.commit_id, version)
                continue
            self._heads.remember(decision)
            self._on_commit(decision)
            return decision.outcome()
        message = f"lost {self._max_attempts} races for this aggregate; send it again"
        return await self._record(envelope, RejectionCode.CONFLICT, message)

    def _decide(
        self,
        envelope: CommandEnvelope,
        aggregate: AggregateDefinition[Any],
        payload: BaseModel,
        head: Commit | None,
        related: dict[tuple[str, str], Any],
        trace_context: dict[str, str] | None = None,
    ) -> Commit | Rejected | Accepted:
        """The pure part: a commit to store, or the rejection to record."""
        version = head.version if head else 0
        if envelope.expected_version is not None and envelope.expected_version != version:
            message = (
                f"expected version {envelope.expected_version} but the aggregate is at version {version}"
            )
            return reject(envelope, RejectionCode.CONFLICT, message)
        try:
            state = aggregate.state_model.model_validate(head.state) if head else None
            events = aggregate.decide(state, payload, related)
        except RuleViolationError as exc:
            return reject(envelope, RejectionCode.RULE_VIOLATED, f"{exc.rule}: {exc.message}")
        except AggregateNotFoundError as exc:
            return reject(envelope, RejectionCode.NOT_FOUND, exc.message)
        except ValidationError as exc:
            # The decision produced a value its own contract refuses (an amount out of range): the
            # command cannot be applied as sent, which is the sender's to fix, not a server fault.
            return reject(
                envelope, RejectionCode.INVALID, "the command leads to invalid values", field_errors(exc)
            )
        if not events:
            return self._unchanged(envelope, aggregate.aggregate_type, head)
        return self._commit(
            envelope, aggregate, version, aggregate.fold(state, events), events, trace_context
        )

    @staticmethod
    def _unchanged(
        envelope: CommandEnvelope, aggregate_type: str, head: Commit | None
    ) -> Accepted | Rejected:
        """The answer to a command whose decision has no events. It is not stored (there is no
        commit), so a repeat is decided again."""
        if head is None:
            message = "the aggregate does not exist and the command changes nothing"
            return reject(envelope, RejectionCode.NOT_FOUND, message)
        return Accepted(
            command_id=envelope.command_id,
            command_type=envelope.type,
            aggregate_id=envelope.aggregate_id,
            correlation_id=envelope.correlation_id,
            aggregate_type=aggregate_type,
            version=head.version,
            event_ids=[],
            consistency_token=ConsistencyToken(aggregate_type, envelope.aggregate_id, head.version).encode(),
        )

    async def _head(
        self, aggregate_type: str, aggregate_id: str, *, fresh: bool
    ) -> tuple[Commit | None, bool]:
        """The aggregate's head, and whether the store confirmed it (False: cached, or guessed absent;
        then it may be stale)."""
        if not fresh:
            cached = self._heads.get(aggregate_type, aggregate_id)
            if cached is not None:
                return cached, False
            if self._heads.may_be_new(aggregate_type, aggregate_id):
                return None, False
        head = await self._timed(self._store.load_head(aggregate_type, aggregate_id))
        if head is not None:
            self._heads.remember(head)
        return head, True

    async def _previous_outcome(self, command_id: uuid.UUID) -> CommandResult | None:
        return await self._timed(self._store.find_outcome(command_id))

    async def _related(
        self, aggregate: AggregateDefinition[Any], payload: BaseModel
    ) -> dict[tuple[str, str], Any]:
        related: dict[tuple[str, str], Any] = {}
        for ref in aggregate.related(payload):
            head = await self._timed(self._store.load_head(*ref))
            model = self._registry.aggregate(ref[0]).state_model
            related[ref] = model.model_validate(head.state) if head else None
        return related

    def _commit(
        self,
        envelope: CommandEnvelope,
        aggregate: AggregateDefinition[Any],
        base_version: int,
        state: BaseModel | None,
        payloads: Any,
        trace_context: dict[str, str] | None = None,
    ) -> Commit:
        now = utc_now()
        events = [
            EventEnvelope(
                event_id=EventEnvelope.id_for(
                    aggregate.aggregate_type, envelope.aggregate_id, base_version + i
                ),
                type=p.TYPE,
                schema_version=p.SCHEMA_VERSION,
                aggregate_type=aggregate.aggregate_type,
                aggregate_id=envelope.aggregate_id,
                version=base_version + i,
                occurred_at=now,
                correlation_id=envelope.correlation_id,
                causation_id=str(envelope.command_id),
                payload=p.model_dump(mode="json"),
            )
            for i, p in enumerate(payloads, start=1)
        ]
        return Commit(
            aggregate_type=aggregate.aggregate_type,
            aggregate_id=envelope.aggregate_id,
            base_version=base_version,
            version=base_version + len(events),
            command_id=envelope.command_id,
            command_type=envelope.type,
            correlation_id=envelope.correlation_id,
            events=events,
            state=state.model_dump(mode="json") if state is not None else {},
            committed_at=now,
            shard=shard_of(aggregate.aggregate_type, envelope.aggregate_id, self._relay_shards),
            trace_context=trace_context,
        )

    async def _record(self, envelope: CommandEnvelope, code: RejectionCode, message: str) -> CommandResult:
        """Decisions about state are recorded, so a repeat of the command gets the same answer."""
        return await self._timed(self._store.record_rejection(reject(envelope, code, message)))

    async def _timed(self, operation: Awaitable[T]) -> T:
        started = time.perf_counter()
        try:
            return await operation
        finally:
            STORE_SECONDS.observe(time.perf_counter() - started)
