"""The common library of the CQRS services: wire formats, contracts, settings and store ports.

Imported by every service, never run on its own. Nothing here connects anywhere at import time.
"""
