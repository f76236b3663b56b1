"""The project's fault soak: open-loop load through both doors, seeded faults, then a checker.

`python -m soak --minutes 30 --seed N` (`make soak`) or `--quick` (the test in `tests/soak`). It runs
the three services as processes against a private Kafka, PostgreSQL and FerretDB (the infra scripts
on other ports and state), injects faults through the real processes, and reads Kafka, the write
store and PostgreSQL directly to report lost or duplicated effects, version gaps, read models that
differ from a fold of the write store, recovery and convergence times and 5xx answers other than 503.
"""
