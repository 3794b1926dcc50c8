"""The catalog context: properties, room types, amenities, photos, host ownership."""
