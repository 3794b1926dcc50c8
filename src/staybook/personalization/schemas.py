"""Request and response models of the personalization context."""
