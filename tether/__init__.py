"""tether: an edge-to-cloud systems stack for robots (ROS 2 messages over Zenoh)."""

__version__ = "0.1.0"
__all__ = ["__version__"]
