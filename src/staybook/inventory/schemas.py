"""Request and response models of the inventory context."""
