"""Events the catalog context publishes, and the subscriptions it reacts with."""
