"""ament_python package `configbot_ros`: registers ConfigBot's executables with ament.

The code is the `tether` distribution (pip install -e <repo>[edge] in the ROS 2 Python
environment; Python 3.10 on Humble); this package installs the executables under
lib/configbot_ros (setup.cfg), so `ros2 run configbot_ros configbot --ros-args -p spec:=FILE`
and `ros2 launch configbot_ros configbot.launch.yaml spec:=FILE` find them. The launch file sets
TETHER_TRANSPORT=rclpy: ConfigBot joins ROS 2's own middleware and tunes the robot's nodes.
"""

from setuptools import setup

package_name = "configbot_ros"
EXECUTABLES = {
    "configbot": "tether.edge.configbot.node:main",
    "worker": "tether.edge.configbot.workload:worker_main",
}

setup(
    name=package_name,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", ["launch/configbot.launch.yaml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={"console_scripts": [f"{name} = {target}" for name, target in EXECUTABLES.items()]},
)
