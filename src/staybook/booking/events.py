"""Events the booking context publishes, and the subscriptions it reacts with."""
