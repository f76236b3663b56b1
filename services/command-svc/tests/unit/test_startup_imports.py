"""Start-up time is recovery time: a replica on MongoDB must not pay for the DynamoDB client."""

from __future__ import annotations

import subprocess
import sys


def test_the_app_imports_no_aws_client_library_until_a_dynamodb_store_is_opened() -> None:
    probe = (
        "import sys, command_svc.app;"
        " print(sorted(m for m in ('botocore', 'aiobotocore') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()
    assert loaded == "[]"
