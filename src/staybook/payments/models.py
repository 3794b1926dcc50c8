"""Tables of the payments context."""
