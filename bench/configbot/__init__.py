"""ConfigBot benchmark (being written)."""
