"""The README's Kafka idiom stays true: aiokafka only, no Kafka client in query-svc, manual commits."""

from __future__ import annotations

import re

import pytest

from tests.structure.imports import ROOT, imports_in

PACKAGES = ["shared/src", "cli/src", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/src"))]


@pytest.mark.parametrize("tree", PACKAGES)
def test_no_package_imports_a_second_kafka_framework(tree: str) -> None:
    frameworks = ("faststream", "confluent_kafka", "kafka")  # `kafka` is kafka-python
    found = [i.module for i in imports_in(ROOT / tree) if i.module.split(".")[0] in frameworks]
    assert found == []


def test_query_svc_has_no_kafka_client() -> None:
    found = [i.module for i in imports_in(ROOT / "services/query-svc/src") if i.module.startswith("aiokafka")]
    assert found == []


def test_every_consumer_group_member_commits_by_hand() -> None:
    """A consumer with a group and auto-commit on would acknowledge records nobody finished."""
    sources = [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("shared/src/**/*.py")]
    grouped = []
    for path in sources:
        text = path.read_text()
        for call in re.finditer(r"AIOKafkaConsumer\((.*?)\n\s*\)", text, re.DOTALL):
            arguments = call.group(1)
            if "group_id=" in arguments and "group_id=None" not in arguments:
                grouped.append(path.relative_to(ROOT).parts[1])
                assert "enable_auto_commit=False" in arguments, path
    # The scan found the group members the README describes (it would pass vacuously otherwise).
    assert sorted(set(grouped)) == ["command-svc", "projector-svc"]
