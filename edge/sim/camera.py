"""The robot's front camera: MuJoCo offscreen rendering on a thread of its own.

OSMesa renders on the CPU (~35-60 ms per 160x120 frame), and rendering releases the GIL, so a
worker thread owns the renderer (its GL context is bound to that thread) and renders from a
private copy of the scene state while physics goes on. The renderer is closed explicitly:
left to the garbage collector it fails at interpreter exit. Segmentation rendering gives the
ground truth of which pixels are people.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from tether.edge.sim.model import ModelIndex

__all__ = ["CameraFrame", "CameraSpec", "CameraWorker", "render_once"]


@dataclass(frozen=True)
class CameraSpec:
    width: int = 160
    height: int = 120
    rate_hz: float = 5.0


@dataclass
class CameraFrame:
    """rgb: (H, W, 3) uint8; people: (H, W) int16 person slot per pixel, -1 elsewhere (when asked)."""

    stamp: float  # simulation time of the state rendered, s
    rgb: np.ndarray
    people: np.ndarray | None = None


class _Scene:
    """A renderer and its own MjData; touch only from one thread."""

    def __init__(self, model: mujoco.MjModel, index: ModelIndex, spec: CameraSpec) -> None:
        self.model = model
        self.index = index
        self.data = mujoco.MjData(model)
        self.renderer = mujoco.Renderer(model, spec.height, spec.width)
        # geom id -> person slot, for segmentation ground truth
        self.geom_person = np.full(model.ngeom, -1, dtype=np.int16)
        for slot, geoms in enumerate(index.person_geoms):
            self.geom_person[list(geoms)] = slot

    def render(
        self, qpos: np.ndarray, mocap_pos: np.ndarray, segment: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        self.data.qpos[:] = qpos
        self.data.mocap_pos[:] = mocap_pos
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self.renderer.update_scene(self.data, camera=self.index.camera)
        rgb = self.renderer.render().copy()
        people = None
        if segment:
            self.renderer.enable_segmentation_rendering()
            self.renderer.update_scene(self.data, camera=self.index.camera)
            seg = self.renderer.render()  # (H, W, 2): object id, object type
            self.renderer.disable_segmentation_rendering()
            ids, types = seg[..., 0], seg[..., 1]
            is_geom = (types == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids >= 0)
            people = np.full(ids.shape, -1, dtype=np.int16)
            people[is_geom] = self.geom_person[ids[is_geom]]
        return rgb, people

    def close(self) -> None:
        self.renderer.close()


def render_once(
    model: mujoco.MjModel, index: ModelIndex, spec: CameraSpec
) -> tuple[
    Callable[[np.ndarray, np.ndarray, bool], tuple[np.ndarray, np.ndarray | None]], Callable[[], None]
]:
    """(render, close) on the calling thread, for offline use (training data): no worker."""
    scene = _Scene(model, index, spec)
    return scene.render, scene.close


class CameraWorker:
    """Renders requested frames on a worker thread; `on_frame` is called on that thread with each frame.

    `request` never blocks: while a frame is in flight a new request is dropped (a camera that
    cannot keep up delivers fewer frames, it does not queue them). `close()` joins the thread
    and frees the GL context.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        index: ModelIndex,
        spec: CameraSpec,
        on_frame: Callable[[CameraFrame], None],
    ) -> None:
        self._requests: queue.Queue = queue.Queue(maxsize=1)
        self._on_frame = on_frame
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.dropped = 0
        self.rendered = 0
        self._thread = threading.Thread(
            target=self._run, args=(model, index, spec), name="sim-camera", daemon=True
        )
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None:
            raise RuntimeError(
                f"the simulated camera cannot render ({self._error}); on a machine without a GPU install "
                "OSMesa (`apt-get install libosmesa6`) and use MUJOCO_GL=osmesa"
            ) from self._error

    def _run(self, model: mujoco.MjModel, index: ModelIndex, spec: CameraSpec) -> None:
        try:
            scene = _Scene(model, index, spec)
        except Exception as exc:  # GL backends fail with assorted errors; reported by the constructor
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                stamp, qpos, mocap, segment = item
                rgb, people = scene.render(qpos, mocap, segment)
                self.rendered += 1
                self._on_frame(CameraFrame(stamp=stamp, rgb=rgb, people=people))
        finally:
            scene.close()

    def request(self, stamp: float, data: mujoco.MjData, segment: bool = False) -> bool:
        """Ask for a frame of the current state; False when the previous one is still rendering."""
        try:
            self._requests.put_nowait((stamp, data.qpos.copy(), data.mocap_pos.copy(), segment))
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self) -> None:
        if self._thread.is_alive():
            while True:
                try:
                    self._requests.put(None, timeout=0.1)
                    break
                except queue.Full:
                    if not self._thread.is_alive():
                        break
            self._thread.join(timeout=10)
