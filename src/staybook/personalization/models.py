"""Tables of the personalization context."""
