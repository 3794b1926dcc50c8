"""Tables of the search context."""
