"""Use cases of the personalization context: commands in, events out."""
