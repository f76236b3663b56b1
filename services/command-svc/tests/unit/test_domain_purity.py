"""The domain package must stay free of I/O: no broker, database, logging, clock or network import."""

import ast
from pathlib import Path

import command_svc.domain

FORBIDDEN = {
    "aiokafka",
    "faststream",
    "pymongo",
    "asyncpg",
    "fastapi",
    "starlette",
    "httpx",
    "logging",
    "time",
    "datetime",
    "socket",
    "asyncio",
    "os",
    "random",
    "uuid",
    "aiobotocore",
    "boto3",
    "command_svc.pipeline",
    "cqrs_shared.write_store",
    "cqrs_shared.kafka_io",
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_domain_modules_import_nothing_that_does_io() -> None:
    root = Path(command_svc.domain.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 4
    offenders = {
        str(f.relative_to(root)): sorted(
            name
            for name in _imports(f)
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
        )
        for f in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}
