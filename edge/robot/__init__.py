"""tether.edge.robot."""
