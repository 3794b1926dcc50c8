"""Request and response models of the payments context (its only route takes the provider's raw body)."""
