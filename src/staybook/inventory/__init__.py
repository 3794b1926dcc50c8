"""The inventory context: per-night allotment and price per room type, calendars, holds."""
