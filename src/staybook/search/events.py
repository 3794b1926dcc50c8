"""Events the search context publishes, and the subscriptions it reacts with."""
