"""staybook: accommodation booking platform."""
