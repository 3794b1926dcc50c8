"""The booking context: the booking lifecycle and its saga, idempotency, cancellation policy."""
