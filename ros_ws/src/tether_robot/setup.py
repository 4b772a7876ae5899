"""ament_python package `tether_robot`: registers the simulated robot's executables with ament.

The code is the `tether` distribution (pip install -e <repo>[edge] in the ROS 2 Python
environment; Python 3.10 on Humble); this package only installs the executables under
lib/tether_robot (setup.cfg) so `ros2 run tether_robot sim` and `ros2 launch tether_robot
sim_robot.launch.yaml` find them. The launch file is the repository's launch/sim_robot.launch.yaml
(a symbolic link here), so `tether launch` and `ros2 launch` run the same description.
Set TETHER_TRANSPORT=rclpy to put the nodes on ROS 2's own middleware.
"""

from setuptools import setup

package_name = "tether_robot"
EXECUTABLES = {
    "sim": "tether.edge.sim.node:main",
    "scan_filter": "tether.edge.robot.nodes.scan_filter:main",
    "localization": "tether.edge.robot.nodes.localization:main",
    "navigation": "tether.edge.robot.nodes.navigation:main",
    "perception": "tether.edge.robot.nodes.perception:main",
    "mapping": "tether.edge.robot.nodes.mapping:main",
}

setup(
    name=package_name,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", ["launch/sim_robot.launch.yaml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={"console_scripts": [f"{name} = {target}" for name, target in EXECUTABLES.items()]},
)
