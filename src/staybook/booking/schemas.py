"""Request and response models of the booking context."""
