"""Recovery: PostgreSQL backups and point-in-time restore (pgBackRest), standbys, failover and the DR drill.

Not a bounded context: an operator's tool over the database, which is the truth
(docs/operations/recovery.md). It imports no context; the drill drives the product
over HTTP, as a client would.
"""
