"""Use cases of the payments context: commands in, events out."""
