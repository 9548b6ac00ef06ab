"""Metadata that survives restarts: ``store`` (sqlite: namespaces, containers, the transaction
helper) and ``leases`` (GC roots with expiry, on the same database)."""
