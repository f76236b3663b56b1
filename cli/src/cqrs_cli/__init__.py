"""The operator command-line tool: `cqrs command`, `cqrs token`, `cqrs dlq`, `cqrs projector`."""
