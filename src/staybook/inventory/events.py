"""Events the inventory context publishes, and the subscriptions it reacts with."""
