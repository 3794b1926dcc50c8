"""Use cases of the booking context: commands in, events out."""
