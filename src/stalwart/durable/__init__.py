"""Durable execution: the store protocol and backends, step journal, idempotency ledger."""
