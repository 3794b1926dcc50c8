"""Events the notifications context publishes, and the subscriptions it reacts with."""
