"""Transports under the Node API: Zenoh (default) and rclpy (where ROS 2 is installed)."""
