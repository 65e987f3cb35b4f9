"""The load generator process: private memory, its own TLS client, verifies every reply."""
