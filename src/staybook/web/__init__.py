"""The web context: server-rendered pages for guests and hosts."""
