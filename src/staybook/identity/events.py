"""Events the identity context publishes, and the subscriptions it reacts with."""
