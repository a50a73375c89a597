"""Offscreen MP4 recording of a MuJoCo scene (EGL or OSMesa; no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np


class VideoError(RuntimeError):
    pass


class VideoRecorder:
    """Renders a camera that follows ``body`` and encodes H.264 frames into ``path``."""

    def __init__(
        self,
        model: mujoco.MjModel,
        path: str | Path,
        body: str,
        *,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
    ):
        try:
            import av
        except ImportError:
            raise VideoError("video recording needs PyAV: run `make setup` (or .venv/bin/pip install av)") from None
        os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            self.renderer = mujoco.Renderer(model, height, width)
        except Exception as exc:  # no OpenGL context: say which backend failed
            raise VideoError(
                f"offscreen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {exc}; "
                "install Mesa EGL (apt-get install libegl1 libgl1-mesa-dri) or set MUJOCO_GL=osmesa"
            ) from None
        self.camera = mujoco.MjvCamera()
        self.camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        self.camera.trackbodyid = model.body(body).id
        self.camera.distance, self.camera.elevation, self.camera.azimuth = 2.5, -20.0, 135.0
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream("h264", rate=round(fps))
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self._av = av
        self.frames = 0

    def capture(self, data: mujoco.MjData) -> np.ndarray:
        """Render one frame of ``data`` and append it to the video; returns the RGB image."""
        self.renderer.update_scene(data, self.camera)
        # Shadows and reflections triple the cost of software (Mesa llvmpipe) rendering.
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        self.renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        image = self.renderer.render()
        frame = self._av.VideoFrame.from_ndarray(image, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        return image

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        self.renderer.close()
