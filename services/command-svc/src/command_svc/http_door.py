"""The HTTP door: `POST /v1/commands` runs the same pipeline as the topic door and answers synchronously.

Accepted commands answer 200 with the outcome; rejections answer with RFC 9457 problem details whose
`code` is the same stable rejection code the topic door publishes. The outcome is also published to
`command-results`, so consumers of that topic see every command whichever door it came through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from command_svc.intake import DeadLetter, outcome_label
from command_svc.metrics import COMMAND_SECONDS, COMMANDS
from command_svc.pipeline import CommandPipeline
from command_svc.results_publisher import ResultsPublisher
from cqrs_shared.envelopes import CommandEnvelope
from cqrs_shared.logging_setup import bind_ids
from cqrs_shared.problems import Problem, ProblemError, problem_response
from cqrs_shared.results import Accepted, Rejected
from cqrs_shared.tracing import TRACEPARENT, trace_id_of

log = logging.getLogger(__name__)

#: How long an HTTP answer waits for Kafka to acknowledge the outcome's notification record.
RESULT_ACK_SECONDS = 2.0


def command_router(
    components: Callable[[], tuple[CommandPipeline, ResultsPublisher]], *, max_command_bytes: int
) -> APIRouter:
    """The command route; `components` yields the pipeline once the service's lifespan has built it."""
    router = APIRouter(tags=["commands"])
    problem = {"model": Problem, "content": {"application/problem+json": {}}}

    @router.post(
        "/v1/commands",
        summary="Send a command and wait for its outcome",
        response_model=Accepted,
        responses=dict.fromkeys((400, 401, 403, 404, 409, 413, 422, 503), problem),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": CommandEnvelope.model_json_schema(
                            ref_template="#/components/schemas/{model}"
                        )
                    }
                },
            }
        },
    )
    async def send_command(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Accepted | JSONResponse:
        # The FastAPI instrumentation (when tracing is on) already made the request's span the
        # current one; the caller's trace id names the log lines either way.
        with bind_ids(trace_id=trace_id_of(request.headers.get(TRACEPARENT))):
            return await _send(request, authorization)

    async def _send(request: Request, authorization: str | None) -> Accepted | JSONResponse:
        started = time.perf_counter()
        body = await _read_limited(request, max_command_bytes)
        pipeline, results = components()
        outcome = await pipeline.handle(body, authorization)
        COMMAND_SECONDS.labels("http").observe(time.perf_counter() - started)
        COMMANDS.labels("http", outcome_label(outcome)).inc()
        if isinstance(outcome, DeadLetter):
            return problem_response(
                400, "not-a-command", "Not a command", outcome.detail, reason=outcome.reason
            )
        try:
            # Bounded, enqueueing included: with Kafka down the answer must not wait for the
            # producer's own timeout, and a freshly renewed producer's `send` waits up to that long
            # for metadata before it even returns the delivery (the quick soak saw HTTP clients
            # retry for 30 s during a Kafka outage, each attempt hanging there).
            await asyncio.wait_for(_published(results, outcome), RESULT_ACK_SECONDS)
        except Exception:
            # The outcome is stored and answered here; only the notification record is missing.
            log.exception("could not publish the outcome of %s to command-results", outcome.command_id)
        if isinstance(outcome, Rejected):
            return rejection_response(outcome)
        return outcome

    return router


async def _published(results: ResultsPublisher, outcome: Accepted | Rejected) -> None:
    delivery = await results.send_outcome(outcome)
    await delivery


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, "too-large", "Request too large", f"the body exceeds {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ProblemError(413, "too-large", "Request too large", f"the body exceeds {limit} bytes")
    return bytes(body)


def rejection_response(outcome: Rejected) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if outcome.code.value == "unauthorized" else None
    return problem_response(
        outcome.code.http_status,
        outcome.code.value.replace("_", "-"),
        f"Command rejected: {outcome.code.value}",
        outcome.message,
        headers=headers,
        # `status` is the HTTP status in a problem; the outcome's own status is implied by the error.
        **outcome.model_dump(mode="json", exclude={"message", "status"}),
    )
