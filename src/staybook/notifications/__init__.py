"""The notifications context: templates, email, SMS/push providers, retries, dead letters, preferences."""
