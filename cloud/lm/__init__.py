"""tether.cloud.lm."""
