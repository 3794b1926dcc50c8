"""Tables of the catalog context."""
