"""Use cases of the catalog context: commands in, events out."""
