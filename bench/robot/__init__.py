"""tether bench robot (being written)."""
