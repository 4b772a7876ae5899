"""The edge side: the robot's application nodes, the simulated robot, and ConfigBot.

Runs on Python 3.10 (ROS 2 Humble, JetPack 6); installs with the `edge` extra (no torch, no Ray).
"""
