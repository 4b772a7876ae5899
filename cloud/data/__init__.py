"""tether.cloud.data."""
