"""tether.edge.configbot."""
