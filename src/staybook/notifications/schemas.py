"""Request and response models of the notifications context."""
