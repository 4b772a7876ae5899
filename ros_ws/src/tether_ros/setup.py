"""ament_python package: installs the `tether` executables under ROS 2 names.

The Python code is the `tether` distribution (pip install -e <repo>[edge] in the ROS 2 Python
environment); this package only registers the executables with ament so `ros2 run tether_ros
talker` and `ros2 launch tether_ros demo.launch.yaml` find them.
"""

from setuptools import setup

package_name = "tether_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=[],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", ["launch/demo.launch.yaml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "talker = tether.bus.demo:talker_main",
            "listener = tether.bus.demo:listener_main",
        ],
    },
)
