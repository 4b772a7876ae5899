"""The telemetry and config bus: ROS 2 messages over Zenoh, with an rclpy-shaped Node API."""
