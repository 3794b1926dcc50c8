"""Events the personalization context publishes, and the subscriptions it reacts with."""
