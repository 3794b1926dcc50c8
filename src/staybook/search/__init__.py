"""The search context: the read model of properties x availability x price, and the search API."""
