"""The robot's application nodes on the bus, one process each (entry points `tether_robot.<exec>`)."""
