"""Contract test suites shipped with the ports, so every adapter (ours or yours) proves the same behaviour."""
