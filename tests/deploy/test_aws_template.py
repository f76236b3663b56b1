"""The CloudFormation template: it declares the tables `cqrs aws create-tables` creates, and cfn-lint passes.

The table declarations live once in command-svc (`dynamo_tables`); this test keeps the template, which
cannot import Python, in agreement with them, and runs cfn-lint (a broken template must fail it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode_str

from command_svc.write_store.dynamo_tables import TableNames, table_definitions
from projector_svc.settings import ProjectorSettings
from tests.deploy.rendering import env_names

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy/aws/cqrs-platform.yaml"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, errors = decode_str(TEMPLATE.read_text())
    assert errors == [] and decoded is not None
    return dict(decoded)


def _tables(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Template tables by their name under the default prefix (`!Sub "${TablePrefix}x"` resolved)."""
    prefix = template["Parameters"]["TablePrefix"]["Default"]
    tables = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::DynamoDB::Table":
            properties = resource["Properties"]
            name = properties["TableName"]["Fn::Sub"].replace("${TablePrefix}", prefix)
            tables[name] = properties
    return tables


def _shape(definition: dict[str, Any]) -> dict[str, Any]:
    """What must agree: keys, attribute types, indexes, stream view, billing."""
    return {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": sorted(definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        "GlobalSecondaryIndexes": sorted(
            definition.get("GlobalSecondaryIndexes", []), key=lambda i: i["IndexName"]
        ),
        "StreamViewType": definition.get("StreamSpecification", {}).get("StreamViewType"),
        "BillingMode": definition["BillingMode"],
    }


def test_the_template_declares_exactly_the_tables_create_tables_creates(template: dict[str, Any]) -> None:
    prefix = template["Parameters"]["TablePrefix"]["Default"]
    declared = {d["TableName"]: _shape(d) for d in table_definitions(TableNames(prefix))}
    in_template = {name: _shape(p) for name, p in _tables(template).items()}
    assert in_template == declared


def test_every_table_has_point_in_time_recovery_deletion_protection_and_is_retained(
    template: dict[str, Any],
) -> None:
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::DynamoDB::Table":
            properties = resource["Properties"]
            assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
            assert properties["DeletionProtectionEnabled"] is True
            assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"


def test_the_stream_lambda_retries_poison_records_alone_and_keeps_what_it_gives_up_on(
    template: dict[str, Any],
) -> None:
    mappings = [
        r["Properties"] for r in template["Resources"].values() if r["Type"].endswith("EventSourceMapping")
    ]
    assert mappings
    for mapping in mappings:
        assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        assert mapping["BisectBatchOnFunctionError"] is True
        assert "MaximumRetryAttempts" in mapping
        assert "OnFailure" in mapping["DestinationConfig"]
        assert mapping["ParallelizationFactor"] == 1


def test_command_svc_may_not_scan_or_delete_history(template: dict[str, Any]) -> None:
    statements = template["Resources"]["CommandServicePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert "dynamodb:Scan" not in actions and "dynamodb:*" not in actions
        if statement["Sid"] == "CommitsAndOutcomes":
            assert "dynamodb:DeleteItem" not in actions


def _cfn_lint(text: str) -> list[str]:
    """cfn-lint's findings (rule id and message) on a template, as `cfn-lint FILE` reports them."""
    return [f"{m.rule.id} {m.message}" for m in lint(text, config=ManualArgs(regions=["us-east-1"]))]


def test_the_serverless_projection_runs_the_projector_handler_over_verified_tls_with_iam(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    function = resources["ProjectionFunction"]["Properties"]
    module, _, name = function["Handler"].rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    environment = function["Environment"]["Variables"]
    assert set(environment) <= env_names(ProjectorSettings)  # every variable one the handler reads
    assert (environment["DATABASE_SSLMODE"], environment["DATABASE_IAM_AUTH"]) == ("verify-full", "true")
    statements = resources["ProjectionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert [s["Action"] for s in statements if "rds-db:connect" in str(s["Action"])] == ["rds-db:connect"]
    # Off unless asked for: teams with Kafka project through projector-svc instead.
    conditions = {r.get("Condition") for r in resources.values() if "Projection" in str(r.get("Condition"))}
    assert conditions == {"WithServerlessProjection"}
    assert template["Parameters"]["ServerlessProjection"]["Default"] == "false"


def test_cfn_lint_passes_the_template_and_fails_a_broken_one() -> None:
    assert _cfn_lint(TEMPLATE.read_text()) == []
    # A key attribute of an unknown type and a stream view that does not exist.
    broken = (
        TEMPLATE.read_text()
        .replace("StreamViewType: NEW_IMAGE", "StreamViewType: NEWEST_IMAGE")
        .replace('AttributeType: "N"', "AttributeType: NUMBER", 1)
    )
    findings = _cfn_lint(broken)
    assert any("NEWEST_IMAGE" in f for f in findings) and any("'NUMBER'" in f for f in findings)
