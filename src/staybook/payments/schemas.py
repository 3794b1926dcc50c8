"""Request and response models of the payments context."""
