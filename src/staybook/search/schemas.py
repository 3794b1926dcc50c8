"""Request and response models of the search context."""
