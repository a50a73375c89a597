"""Offscreen MP4 recording of a MuJoCo scene (EGL or OSMesa; no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np


class VideoError(RuntimeError):
    pass


def follow_camera(camera: mujoco.MjvCamera, body_id: int, view: tuple[float, float, float]) -> mujoco.MjvCamera:
    """Make ``camera`` track body ``body_id`` from ``view`` (distance m, elevation deg, azimuth deg):
    the video's camera and the interactive viewer's (which the user can still orbit and zoom)."""
    camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    camera.trackbodyid = body_id
    camera.distance, camera.elevation, camera.azimuth = (float(v) for v in view)
    return camera


class VideoRecorder:
    """Renders a camera that follows ``body`` (``view``: distance m, elevation and azimuth deg) and
    encodes H.264 frames into ``path``."""

    def __init__(
        self,
        model: mujoco.MjModel,
        path: str | Path,
        body: str,
        *,
        fps: float = 30.0,
        width: int = 640,
        height: int = 480,
        view: tuple[float, float, float] = (2.5, -20.0, 135.0),
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
        self.camera = follow_camera(mujoco.MjvCamera(), model.body(body).id, view)
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


def frame_strip(video: str | Path, out: str | Path, times_s: list[float], width: int = 240) -> Path:
    """A PNG of the frames of ``video`` nearest ``times_s`` (s), side by side, each ``width`` px wide."""
    import av

    picked: dict[float, np.ndarray] = {}
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            for want in times_s:
                if want not in picked and t >= want:
                    picked[want] = frame.to_ndarray(format="rgb24", width=width, height=round(width * 3 / 4))
            if len(picked) == len(times_s):
                break
    missing = [t for t in times_s if t not in picked]
    if missing:
        raise VideoError(f"{video} ends before {missing[0]:g} s")
    strip = np.concatenate([picked[t] for t in times_s], axis=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(out), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = strip.shape[1], strip.shape[0], "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(strip, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m krabgraph.nodes.mujoco.video RUN.mp4 STRIP.png T1 T2 ...``: a frame strip of a video."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("video")
    parser.add_argument("out")
    parser.add_argument("times", nargs="+", type=float, help="seconds into the video")
    parser.add_argument("--width", type=int, default=240, help="width of each frame (px)")
    args = parser.parse_args(argv)
    print(frame_strip(args.video, args.out, args.times, args.width))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
