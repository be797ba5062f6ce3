"""The kernel every other layer builds on: settings, the database and its worker threads,
domain errors, ids, time, encryption, money's integer form and the audit log.

It imports nothing else of creditdash (checked by the import contracts in pyproject.toml)."""
