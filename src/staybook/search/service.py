"""Use cases of the search context: commands in, events out."""
