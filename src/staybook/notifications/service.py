"""Use cases of the notifications context: commands in, events out."""
