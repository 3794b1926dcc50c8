"""Use cases of the inventory context: commands in, events out."""
