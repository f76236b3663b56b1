"""The command side's write-store adapters, one module per backend.

The port (`cqrs_shared.write_store`) and its contract suite stay in the shared library so every adapter
can reach them; the adapters live here because only command-svc talks to the write store, and the
projector and query images should not carry its drivers.
"""
