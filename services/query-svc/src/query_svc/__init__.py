"""query-svc: the HTTP query API over the read models in PostgreSQL.

The public surface (what other packages, tools and benchmarks may import) is the modules below:
running it (`app`, `settings`) and test support (`testing`); its read models are declared in
`cqrs_shared.read_models`. The rest is internal and may change without notice.
"""

__all__ = ["app", "settings", "testing"]
