"""The operator command-line tool: `cqrs command`, `cqrs token`, `cqrs dlq`, `cqrs projector`.

Its public surface is the `cqrs` application in `main` (the console script); the command modules
are internal.
"""

__all__ = ["main"]
