"""tether.edge.sim."""
