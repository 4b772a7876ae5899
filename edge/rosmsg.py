"""Conversions between ROS 2 messages and the numpy/tuple forms the edge algorithms use.

One place for them, so the simulator and every robot node agree on frames and layouts:
planar poses are (x, y, yaw) in metres and radians; stamps are seconds as floats; scans are
float32 arrays; maps are `GridMap`s (row-major, row 0 at the origin's y, as OccupancyGrid).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tether.bus.messages import get_type
from tether.edge.gridmap import GridMap

__all__ = [
    "clock_msg",
    "grid_from_msg",
    "grid_msg",
    "header",
    "image_msg",
    "image_from_msg",
    "odometry_from_msg",
    "odometry_msg",
    "path_from_msg",
    "path_msg",
    "pose2d_from_pose",
    "pose_msg",
    "pose_array_msg",
    "pose_array_from_msg",
    "pose_stamped_msg",
    "pose_with_covariance_stamped_msg",
    "scan_from_msg",
    "scan_msg",
    "stamp",
    "stamp_seconds",
    "tf_msg",
    "transforms_from_msg",
    "twist_msg",
    "yaw_from_quaternion",
]

_T = {
    name: get_type(name)
    for name in (
        "builtin_interfaces/msg/Time",
        "std_msgs/msg/Header",
        "geometry_msgs/msg/Point",
        "geometry_msgs/msg/Quaternion",
        "geometry_msgs/msg/Pose",
        "geometry_msgs/msg/PoseStamped",
        "geometry_msgs/msg/PoseArray",
        "geometry_msgs/msg/PoseWithCovariance",
        "geometry_msgs/msg/PoseWithCovarianceStamped",
        "geometry_msgs/msg/Vector3",
        "geometry_msgs/msg/Twist",
        "geometry_msgs/msg/TwistWithCovariance",
        "geometry_msgs/msg/Transform",
        "geometry_msgs/msg/TransformStamped",
        "tf2_msgs/msg/TFMessage",
        "nav_msgs/msg/Odometry",
        "nav_msgs/msg/Path",
        "nav_msgs/msg/OccupancyGrid",
        "nav_msgs/msg/MapMetaData",
        "sensor_msgs/msg/LaserScan",
        "sensor_msgs/msg/Image",
        "rosgraph_msgs/msg/Clock",
    )
}


def stamp(t: float) -> Any:
    sec = math.floor(t)
    return _T["builtin_interfaces/msg/Time"](
        sec=int(sec), nanosec=int(round((t - sec) * 1e9)) % 1_000_000_000
    )


def stamp_seconds(msg_stamp: Any) -> float:
    return msg_stamp.sec + msg_stamp.nanosec * 1e-9


def header(t: float, frame_id: str) -> Any:
    return _T["std_msgs/msg/Header"](stamp=stamp(t), frame_id=frame_id)


def clock_msg(t: float) -> Any:
    return _T["rosgraph_msgs/msg/Clock"](clock=stamp(t))


def _quat(yaw: float) -> Any:
    return _T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=math.sin(yaw / 2), w=math.cos(yaw / 2))


def yaw_from_quaternion(q: Any) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def pose_msg(x: float, y: float, yaw: float) -> Any:
    return _T["geometry_msgs/msg/Pose"](
        position=_T["geometry_msgs/msg/Point"](x=x, y=y, z=0.0), orientation=_quat(yaw)
    )


def pose2d_from_pose(p: Any) -> tuple[float, float, float]:
    return float(p.position.x), float(p.position.y), yaw_from_quaternion(p.orientation)


def pose_stamped_msg(t: float, frame: str, x: float, y: float, yaw: float) -> Any:
    return _T["geometry_msgs/msg/PoseStamped"](header=header(t, frame), pose=pose_msg(x, y, yaw))


def _cov6(var_x: float, var_y: float, var_yaw: float) -> np.ndarray:
    cov = np.zeros(36)
    cov[0], cov[7], cov[35] = var_x, var_y, var_yaw
    return cov


def pose_with_covariance_stamped_msg(
    t: float, frame: str, x: float, y: float, yaw: float, var: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> Any:
    return _T["geometry_msgs/msg/PoseWithCovarianceStamped"](
        header=header(t, frame),
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](pose=pose_msg(x, y, yaw), covariance=_cov6(*var)),
    )


def pose_array_msg(t: float, frame: str, xy: np.ndarray) -> Any:
    return _T["geometry_msgs/msg/PoseArray"](
        header=header(t, frame),
        poses=[pose_msg(float(p[0]), float(p[1]), 0.0) for p in np.asarray(xy).reshape(-1, 2)],
    )


def pose_array_from_msg(msg: Any) -> np.ndarray:
    """(N, 2) positions."""
    return np.array([[p.position.x, p.position.y] for p in msg.poses], dtype=np.float64).reshape(-1, 2)


def _vec3(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return _T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def twist_msg(v: float, w: float) -> Any:
    return _T["geometry_msgs/msg/Twist"](linear=_vec3(x=float(v)), angular=_vec3(z=float(w)))


def odometry_msg(t: float, x: float, y: float, yaw: float, v: float, w: float, var: float = 1e-3) -> Any:
    return _T["nav_msgs/msg/Odometry"](
        header=header(t, "odom"),
        child_frame_id="base_link",
        pose=_T["geometry_msgs/msg/PoseWithCovariance"](
            pose=pose_msg(x, y, yaw), covariance=_cov6(var, var, var)
        ),
        twist=_T["geometry_msgs/msg/TwistWithCovariance"](
            twist=twist_msg(v, w), covariance=_cov6(var, var, var)
        ),
    )


def odometry_from_msg(msg: Any) -> tuple[float, float, float, float, float, float]:
    """(stamp s, x, y, yaw, v, w)."""
    x, y, yaw = pose2d_from_pose(msg.pose.pose)
    return (
        stamp_seconds(msg.header.stamp),
        x,
        y,
        yaw,
        float(msg.twist.twist.linear.x),
        float(msg.twist.twist.angular.z),
    )


def tf_msg(transforms: list[tuple[float, str, str, float, float, float, float]]) -> Any:
    """TFMessage from (stamp, parent, child, x, y, z, yaw) tuples."""
    out = []
    for t, parent, child, x, y, z, yaw in transforms:
        out.append(
            _T["geometry_msgs/msg/TransformStamped"](
                header=header(t, parent),
                child_frame_id=child,
                transform=_T["geometry_msgs/msg/Transform"](translation=_vec3(x, y, z), rotation=_quat(yaw)),
            )
        )
    return _T["tf2_msgs/msg/TFMessage"](transforms=out)


def transforms_from_msg(msg: Any) -> list[tuple[float, str, str, float, float, float]]:
    """(stamp, parent, child, x, y, yaw) of each transform."""
    out = []
    for tr in msg.transforms:
        t = tr.transform
        out.append(
            (
                stamp_seconds(tr.header.stamp),
                tr.header.frame_id,
                tr.child_frame_id,
                float(t.translation.x),
                float(t.translation.y),
                yaw_from_quaternion(t.rotation),
            )
        )
    return out


def scan_msg(
    t: float,
    ranges: np.ndarray,
    angle_min: float,
    angle_increment: float,
    range_min: float,
    range_max: float,
    scan_time: float,
    frame: str = "laser",
) -> Any:
    n = len(ranges)
    return _T["sensor_msgs/msg/LaserScan"](
        header=header(t, frame),
        angle_min=float(angle_min),
        angle_max=float(angle_min + angle_increment * (n - 1)),
        angle_increment=float(angle_increment),
        time_increment=0.0,
        scan_time=float(scan_time),
        range_min=float(range_min),
        range_max=float(range_max),
        ranges=np.asarray(ranges, dtype=np.float32),
        intensities=np.zeros(0, dtype=np.float32),
    )


def scan_from_msg(msg: Any) -> tuple[float, np.ndarray, np.ndarray]:
    """(stamp s, ranges (N,) float32, angles (N,) float64 in the laser frame)."""
    ranges = np.asarray(msg.ranges, dtype=np.float32)
    angles = msg.angle_min + msg.angle_increment * np.arange(len(ranges))
    return stamp_seconds(msg.header.stamp), ranges, angles


def grid_msg(t: float, grid: GridMap) -> Any:
    """OccupancyGrid from a GridMap (frame `map`)."""
    info = _T["nav_msgs/msg/MapMetaData"](
        map_load_time=stamp(t),
        resolution=float(grid.resolution),
        width=grid.width,
        height=grid.height,
        origin=pose_msg(grid.origin_x, grid.origin_y, 0.0),
    )
    return _T["nav_msgs/msg/OccupancyGrid"](
        header=header(t, "map"), info=info, data=grid.data.reshape(-1).astype(np.int8)
    )


def grid_from_msg(msg: Any) -> GridMap:
    data = np.asarray(msg.data, dtype=np.int8).reshape(msg.info.height, msg.info.width)
    return GridMap(
        data=data,
        resolution=float(msg.info.resolution),
        origin_x=float(msg.info.origin.position.x),
        origin_y=float(msg.info.origin.position.y),
    )


def path_msg(t: float, points: np.ndarray, frame: str = "map") -> Any:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    d = np.diff(pts, axis=0)
    yaws = np.arctan2(d[:, 1], d[:, 0]) if len(d) else np.zeros(0)
    yaws = np.append(yaws, yaws[-1] if len(yaws) else 0.0)  # the last pose keeps the last heading
    poses = [pose_stamped_msg(t, frame, float(x), float(y), float(a)) for (x, y), a in zip(pts, yaws)]
    return _T["nav_msgs/msg/Path"](header=header(t, frame), poses=poses)


def path_from_msg(msg: Any) -> np.ndarray:
    """(N, 2) points."""
    return np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses], dtype=np.float64).reshape(
        -1, 2
    )


def image_msg(t: float, rgb: np.ndarray, frame: str = "camera") -> Any:
    h, w, _ = rgb.shape
    return _T["sensor_msgs/msg/Image"](
        header=header(t, frame),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1),
    )


def image_from_msg(msg: Any) -> tuple[float, np.ndarray]:
    """(stamp s, (H, W, 3) uint8 rgb)."""
    if msg.encoding != "rgb8":
        raise ValueError(f"an rgb8 image is needed, but got encoding {msg.encoding!r}")
    data = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
    return stamp_seconds(msg.header.stamp), data.reshape(msg.height, msg.width, 3)
