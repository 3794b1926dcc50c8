"""Request and response models of the catalog context."""
