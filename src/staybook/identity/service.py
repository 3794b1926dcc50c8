"""Use cases of the identity context: commands in, events out."""
