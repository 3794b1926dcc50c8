"""The personalization context: behaviour signals, user profiles, recommendations, re-ranking."""
