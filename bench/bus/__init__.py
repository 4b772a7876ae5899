"""tether bench bus: throughput and latency of the Node API against raw Zenoh."""
