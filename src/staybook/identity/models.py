"""Tables of the identity context."""
