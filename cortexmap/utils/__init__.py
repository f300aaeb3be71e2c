"""Small shared helpers: atomic output, provenance, validation, progress."""
