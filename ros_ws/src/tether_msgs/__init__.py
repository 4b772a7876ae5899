"""tether_msgs: the .msg files of tether's own message types (package data of tether.msgs)."""
