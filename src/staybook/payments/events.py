"""Events the payments context publishes, and the subscriptions it reacts with."""
