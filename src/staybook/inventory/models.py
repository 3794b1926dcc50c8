"""Tables of the inventory context."""
