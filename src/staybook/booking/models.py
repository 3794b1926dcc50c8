"""Tables of the booking context."""
