"""The MuJoCo model (MJCF) of a world, the robot and a fixed number of people slots.

People are mocap bodies (kinematic: MuJoCo moves nothing, we set their poses); slots not in
use are parked under the floor, so people can join mid-run without rebuilding the model.
Geom groups: 0 static world, 1 people, 2 robot and floor; the LiDAR sees groups 0 and 1 (the
camera renders groups 0-2, MuJoCo's default).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco

from tether.edge.sim.drive import RobotSpec
from tether.edge.sim.world import World

__all__ = ["ModelIndex", "build_model", "PARKED_Z"]

PARKED_Z = -50.0  # where unused people slots wait, far below the floor
_SHIRTS = [
    "0.8 0.2 0.2",
    "0.2 0.4 0.8",
    "0.2 0.6 0.3",
    "0.9 0.6 0.1",
    "0.5 0.3 0.6",
    "0.1 0.1 0.1",
    "0.9 0.9 0.9",
]


@dataclass(frozen=True)
class ModelIndex:
    """Ids the simulator needs, resolved once from the compiled model."""

    robot_body: int
    robot_geom: int
    qpos_x: int
    qpos_y: int
    qpos_yaw: int
    dof_x: int
    dof_y: int
    dof_yaw: int
    lidar_site: int
    camera: int
    person_mocap: tuple[int, ...]  # mocap index per person slot
    person_geoms: tuple[tuple[int, ...], ...]  # geom ids per person slot
    static_geoms: frozenset[int]


def _mjcf(world: World, spec: RobotSpec, max_people: int) -> str:
    w, h = world.size
    parts = [
        '<mujoco model="tether_office">',
        '  <compiler angle="radian"/>',
        '  <option timestep="0.0025" integrator="implicitfast"/>',
        # No shadows, small offscreen buffer: OSMesa renders on the CPU.
        '  <visual><global offwidth="320" offheight="240"/><quality shadowsize="0"/>'
        '<headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5"/></visual>',
        "  <asset>",
        '    <texture name="floor" type="2d" builtin="checker" rgb1="0.55 0.55 0.5" rgb2="0.45 0.45 0.42"'
        ' width="64" height="64"/>',
        '    <material name="floor" texture="floor" texrepeat="20 12"/>',
        '    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.75 0.75 0.78" rgb2="0.35 0.35 0.4"'
        ' width="32" height="32"/>',
        "  </asset>",
        "  <worldbody>",
        '    <light directional="true" pos="0 0 5" dir="0.2 0.1 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>',
        f'    <geom name="floor" type="plane" pos="{w / 2} {h / 2} 0" size="{w / 2 + 1} {h / 2 + 1} 0.1"'
        ' material="floor" group="2" contype="0" conaffinity="0"/>',
    ]
    wall_colours = ["0.85 0.82 0.75", "0.75 0.8 0.85", "0.8 0.78 0.7"]
    for i, b in enumerate(world.boxes):
        rgba = wall_colours[i % len(wall_colours)] if b.kind == "wall" else "0.45 0.3 0.2"
        parts.append(
            f'    <geom name="{b.kind}_{i}" type="box" pos="{b.cx} {b.cy} {b.height / 2}"'
            f' size="{b.hx} {b.hy} {b.height / 2}" rgba="{rgba} 1" group="0"/>'
        )
    for i in range(max_people):
        shirt = _SHIRTS[i % len(_SHIRTS)]
        parts += [
            f'    <body name="person_{i}" mocap="true" pos="0 0 {PARKED_Z}">',
            f'      <geom name="person_{i}_legs" type="capsule" fromto="0 0 0.15 0 0 0.85" size="0.13"'
            f' rgba="0.2 0.2 0.3 1" group="1"/>',
            f'      <geom name="person_{i}_body" type="capsule" fromto="0 0 0.95 0 0 1.35" size="0.19"'
            f' rgba="{shirt} 1" group="1"/>',
            f'      <geom name="person_{i}_head" type="sphere" pos="0 0 1.62" size="0.11" rgba="0.85 0.7 0.55 1"'
            ' group="1"/>',
            "    </body>",
        ]
    body_z = spec.height / 2 + 0.03
    cam_z = spec.camera_height - body_z
    parts += [
        # At the origin: the joints' positions are the robot's map-frame pose (x, y, yaw).
        f'    <body name="robot" pos="0 0 {body_z}">',
        '      <joint name="x" type="slide" axis="1 0 0" damping="1"/>',
        '      <joint name="y" type="slide" axis="0 1 0" damping="1"/>',
        '      <joint name="yaw" type="hinge" axis="0 0 1" damping="0.1"/>',
        f'      <geom name="base" type="cylinder" size="{spec.radius} {spec.height / 2}" mass="{spec.mass}"'
        ' rgba="0.15 0.15 0.18 1" group="2"/>',
        f'      <site name="lidar" pos="0 0 {spec.lidar_height - body_z}" size="0.03"/>',
        f'      <camera name="front" pos="{spec.radius - 0.03} 0 {cam_z}" xyaxes="0 -1 0 0 0 1"'
        f' fovy="{spec.camera_fovy_deg}"/>',  # MJCF's fovy is in degrees whatever the compiler's angle
        "    </body>",
        "  </worldbody>",
        "  <actuator>",
        # Velocity servos; force limits give the base a realistic acceleration (~4 m/s^2).
        '    <velocity name="vx" joint="x" kv="400" forcerange="-80 80" forcelimited="true"/>',
        '    <velocity name="vy" joint="y" kv="400" forcerange="-80 80" forcelimited="true"/>',
        '    <velocity name="wz" joint="yaw" kv="10" forcerange="-15 15" forcelimited="true"/>',
        "  </actuator>",
        "</mujoco>",
    ]
    return "\n".join(parts)


def build_model(world: World, spec: RobotSpec, max_people: int) -> tuple[mujoco.MjModel, ModelIndex]:
    """Compile the model; the robot's pose is its joints' positions (x, y, yaw), set by the simulator."""
    model = mujoco.MjModel.from_xml_string(_mjcf(world, spec, max_people))

    def jid(name: str) -> int:
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)

    def gid(name: str) -> int:
        return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)

    robot = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "robot")
    mocap, pgeoms = [], []
    for i in range(max_people):
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"person_{i}")
        mocap.append(int(model.body_mocapid[body]))
        pgeoms.append(tuple(gid(f"person_{i}_{part}") for part in ("legs", "body", "head")))
    static = frozenset(i for i in range(model.ngeom) if model.geom_group[i] == 0)
    index = ModelIndex(
        robot_body=robot,
        robot_geom=gid("base"),
        qpos_x=int(model.jnt_qposadr[jid("x")]),
        qpos_y=int(model.jnt_qposadr[jid("y")]),
        qpos_yaw=int(model.jnt_qposadr[jid("yaw")]),
        dof_x=int(model.jnt_dofadr[jid("x")]),
        dof_y=int(model.jnt_dofadr[jid("y")]),
        dof_yaw=int(model.jnt_dofadr[jid("yaw")]),
        lidar_site=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "lidar"),
        camera=mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "front"),
        person_mocap=tuple(mocap),
        person_geoms=tuple(pgeoms),
        static_geoms=static,
    )
    return model, index
