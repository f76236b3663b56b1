"""The verdict: what the clients were told, against what Kafka, the write store and PostgreSQL hold.

Every check is a pure function of the ledger (client side) and the observed state (server side), and
returns the offending cases as one line each. An empty list everywhere is the only passing result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from cqrs_shared.write_store import Commit
from projector_svc.testing.shop_fold import fold
from projector_svc.testing.views_io import diff
from soak.ledger import Ack, Ledger
from soak.sources import AggregateKey, Observed

EXAMPLES = 10


@dataclass(frozen=True)
class Violation:
    kind: str
    count: int
    examples: list[str]


def _violation(kind: str, cases: Iterable[str]) -> Violation | None:
    found = list(dict.fromkeys(cases))
    return Violation(kind, len(found), found[:EXAMPLES]) if found else None


def check(ledger: Ledger, observed: Observed) -> list[Violation]:
    """Every consistency violation (timing violations are judged by the run, see `report`)."""
    by_command = _commits_by_command(observed.commits)
    on_topic = {(e.event.aggregate_type, e.event.aggregate_id, e.event.version) for e in observed.events}
    acks = [*ledger.http_acks, *observed.results]
    found = [
        _violation("lost_acknowledged", lost_acknowledged(acks, by_command, on_topic)),
        _violation("stuck_acknowledged", stuck_acknowledged(acks, by_command, on_topic)),
        _violation("unpublished_commit", unpublished_commits(observed.commits, on_topic, acks)),
        _violation("conflicting_outcomes", conflicting_outcomes(acks, observed)),
        _violation("duplicate_effect", duplicate_effects(by_command, observed)),
        _violation("version_gap", store_version_gaps(observed.commits)),
        _violation("version_gap", topic_version_order(observed)),
        _violation("phantom_event", phantom_events(observed)),
        _violation("read_model_mismatch", read_model_mismatches(observed)),
        _violation("invalid_accepted", invalid_accepted(ledger, acks)),
        _violation("stale_version_accepted", stale_versions_accepted(ledger, by_command)),
        _violation("unanswered", unanswered(ledger, observed)),
        _violation("server_error", (f"{e.where} {e.status}: {e.detail}" for e in ledger.server_errors)),
    ]
    return [v for v in found if v is not None]


def _commits_by_command(commits: list[Commit]) -> dict[str, list[Commit]]:
    by_command: dict[str, list[Commit]] = defaultdict(list)
    for commit in commits:
        by_command[str(commit.command_id)].append(commit)
    return by_command


def _missing(commit: Commit, on_topic: set[tuple[str, str, int]]) -> list[int]:
    return [e.version for e in commit.events if (e.aggregate_type, e.aggregate_id, e.version) not in on_topic]


def lost_acknowledged(
    acks: list[Ack], by_command: dict[str, list[Commit]], on_topic: set[tuple[str, str, int]]
) -> Iterable[str]:
    """Accepted answers whose commit is missing or differs, or whose events are not on Kafka although
    the commit is marked published (the relay will never send them again)."""
    for ack in acks:
        if ack.status != "accepted" or ack.events == 0:
            continue  # a no-op decision is answered but stored nowhere, by design
        commits = by_command.get(ack.command_id)
        if not commits:
            yield f"{ack.command_id} ({ack.aggregate_id} v{ack.version}, {ack.source}): no commit stored"
            continue
        commit = commits[0]
        if (commit.aggregate_id, commit.version) != (ack.aggregate_id, ack.version):
            yield f"{ack.command_id}: answered {ack.aggregate_id} v{ack.version}, stored {commit.commit_id}"
        missing = _missing(commit, on_topic)
        if missing and commit.published:
            yield f"{ack.command_id} ({commit.commit_id}): marked published, versions {missing} not on Kafka"


def stuck_acknowledged(
    acks: list[Ack], by_command: dict[str, list[Commit]], on_topic: set[tuple[str, str, int]]
) -> Iterable[str]:
    """Accepted answers whose commit is still unpublished when the run ends (stuck in the outbox)."""
    for ack in acks:
        commits = by_command.get(ack.command_id) if ack.status == "accepted" else None
        if commits and not commits[0].published and (missing := _missing(commits[0], on_topic)):
            yield f"{ack.command_id} ({commits[0].commit_id}): unpublished, versions {missing} not on Kafka"


def unpublished_commits(
    commits: list[Commit], on_topic: set[tuple[str, str, int]], acks: list[Ack]
) -> Iterable[str]:
    """Stored commits no client was told about (the others are `lost_` or `stuck_acknowledged`) whose
    events are not on the event topics: a stored commit is a fact, answered or not."""
    acknowledged = {a.command_id for a in acks if a.status == "accepted"}
    for commit in commits:
        if str(commit.command_id) in acknowledged:
            continue
        for event in commit.events:
            if (event.aggregate_type, event.aggregate_id, event.version) not in on_topic:
                yield f"{commit.commit_id} v{event.version} not on Kafka (published={commit.published})"


def conflicting_outcomes(acks: list[Ack], observed: Observed) -> Iterable[str]:
    """One command id answered two ways (status, version or rejection code), or stored two ways."""
    answers: dict[str, list[Ack]] = defaultdict(list)
    for ack in acks:
        if ack.status != "dead-letter" and not (ack.status == "accepted" and ack.events == 0):
            answers[ack.command_id].append(ack)
    for command_id, seen in answers.items():
        first = seen[0]
        for other in seen[1:]:
            if not first.same_outcome(other):
                yield (
                    f"{command_id}: {first.source} {first.status} v{first.version} {first.code or ''} vs "
                    f"{other.source} {other.status} v{other.version} {other.code or ''}"
                )
                break
    stored = {str(c.command_id) for c in observed.commits}
    for command_id in sorted(stored & set(observed.rejections)):
        yield f"{command_id}: both a commit and a recorded rejection"


def duplicate_effects(by_command: dict[str, list[Commit]], observed: Observed) -> Iterable[str]:
    """Two commits for one command, or two different events for one aggregate version on Kafka."""
    for command_id, commits in by_command.items():
        if len(commits) > 1:
            yield f"{command_id}: {len(commits)} commits ({', '.join(c.commit_id for c in commits)})"
    first: dict[tuple[str, str, int], str] = {}
    for item in observed.events:
        e = item.event
        key = (e.aggregate_type, e.aggregate_id, e.version)
        body = e.model_dump_json()
        if first.setdefault(key, body) != body:
            yield f"{e.aggregate_type}/{e.aggregate_id} v{e.version}: two different events on {item.topic}"


def store_version_gaps(commits: list[Commit]) -> Iterable[str]:
    """Each aggregate's commits chain from version 0 without holes; events number them one by one."""
    streams: dict[AggregateKey, list[Commit]] = defaultdict(list)
    for commit in commits:
        streams[(commit.aggregate_type, commit.aggregate_id)].append(commit)
    for (kind, ident), chain in streams.items():
        expected = 0
        for commit in sorted(chain, key=lambda c: c.base_version):
            versions = [e.version for e in commit.events]
            if commit.base_version != expected or versions != list(range(expected + 1, commit.version + 1)):
                yield f"{kind}/{ident}: commit {commit.commit_id} after version {expected} holds {versions}"
                break
            expected = commit.version


def topic_version_order(observed: Observed) -> Iterable[str]:
    """On the topics, each aggregate's versions first appear as 1, 2, 3, ... (duplicates may follow)."""
    firsts: dict[AggregateKey, list[int]] = defaultdict(list)
    seen: set[tuple[str, str, int]] = set()
    for item in sorted(observed.events, key=lambda i: (i.topic, i.partition, i.offset)):
        e = item.event
        if (e.aggregate_type, e.aggregate_id, e.version) not in seen:
            seen.add((e.aggregate_type, e.aggregate_id, e.version))
            firsts[(e.aggregate_type, e.aggregate_id)].append(e.version)
    for (kind, ident), versions in firsts.items():
        if versions != list(range(1, len(versions) + 1)):
            yield f"{kind}/{ident}: versions first appear on Kafka as {versions[:20]}"


def phantom_events(observed: Observed) -> Iterable[str]:
    """Events on Kafka that the write store does not hold (or holds differently)."""
    stored = {(e.aggregate_type, e.aggregate_id, e.version): e for c in observed.commits for e in c.events}
    for item in observed.events:
        e = item.event
        twin = stored.get((e.aggregate_type, e.aggregate_id, e.version))
        if twin is None:
            yield f"{e.aggregate_type}/{e.aggregate_id} v{e.version} on {item.topic} has no commit"
        elif twin.model_dump_json() != e.model_dump_json():
            yield f"{e.aggregate_type}/{e.aggregate_id} v{e.version} on {item.topic} differs from its commit"
    yield from observed.malformed_events


def read_model_mismatches(observed: Observed) -> Iterable[str]:
    """The views against an independent fold of every stored event, and the applied versions."""
    expected = fold(e for c in observed.commits for e in c.events)
    yield from diff(observed.rows, expected, limit=1_000_000)
    heads: dict[AggregateKey, int] = {}
    for commit in observed.commits:
        key = (commit.aggregate_type, commit.aggregate_id)
        heads[key] = max(heads.get(key, 0), commit.version)
    for key in sorted(set(heads) | set(observed.applied)):
        if heads.get(key) != observed.applied.get(key):
            applied = observed.applied.get(key)
            yield f"{key[0]}/{key[1]}: applied version {applied}, write store head {heads.get(key)}"


def invalid_accepted(ledger: Ledger, acks: list[Ack]) -> Iterable[str]:
    invalid = {p.command_id for p in ledger.sends if p.intent in ("invalid", "garbage")}
    for ack in acks:
        if ack.command_id in invalid and ack.status == "accepted":
            yield f"{ack.command_id}: an invalid command was accepted ({ack.source})"


def stale_versions_accepted(ledger: Ledger, by_command: dict[str, list[Commit]]) -> Iterable[str]:
    """A command pinned to `expected_version` may only be stored on exactly that base version."""
    for planned in ledger.first_plans().values():
        if planned.expected_version is None:
            continue
        for commit in by_command.get(planned.command_id, []):
            if commit.base_version != planned.expected_version:
                yield f"{planned.command_id}: expected {planned.expected_version}, stored {commit.commit_id}"


def unanswered(ledger: Ledger, observed: Observed) -> Iterable[str]:
    """Commands Kafka took (or HTTP clients gave up on) that never got an outcome."""
    answered = {a.command_id for a in observed.results} | observed.dead_letters
    silent = ledger.produced - answered
    for planned in ledger.sends:
        if planned.door == "topic" and planned.command_id in silent:
            yield f"{planned.command_id} ({planned.intent} {planned.type} {planned.aggregate_id}): no outcome"
    for command_id in ledger.http_gave_up:
        if command_id not in answered:
            yield f"{command_id}: the HTTP client gave up (5xx or no connection) and no outcome was published"
