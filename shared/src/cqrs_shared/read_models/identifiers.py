"""The identifier rule of the read side: which names may be quoted into SQL.

Schema, table, view, column and projection names come only from code-level declarations and are
checked against this one rule when declared (by `declarations`) or composed (build schemas,
`read.*` view names): lower-case, starting with a letter, at most 41 characters, so a composed
name such as `<projection>_partition_offsets` stays under PostgreSQL's 63-byte limit.
"""

from __future__ import annotations

import re

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class DeclarationError(ValueError):
    """A read-model declaration is inconsistent; raised at import or start-up, never on a request."""


def check_identifier(name: str, what: str = "identifier") -> str:
    """`name` itself when it is a safe identifier; `DeclarationError` otherwise."""
    if not IDENTIFIER.match(name):
        raise DeclarationError(f"{what} name {name!r} is not a safe identifier")
    return name
