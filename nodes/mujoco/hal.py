"""MuJoCo hardware abstraction layer: the simulated robot as a krabgraph node."""

from __future__ import annotations

import math
import os
from collections import deque
from typing import Any

from krabgraph.launch import Output, Param, ParamError
from krabgraph.launch.api.checks import ParamProblem
from krabgraph.msgs import DepthImage, HeightScan
from krabgraph.nodes.hal import Hal, JointTargets, RobotSnapshot
from krabgraph.nodes.mujoco.physics import MujocoRobotSim
from krabgraph.nodes.mujoco.sensors import DepthCamera, HeightScanner
from krabgraph.nodes.mujoco.terrain import TERRAIN_KINDS, TerrainError, make_terrain


class MujocoHal(Hal):
    """Simulated legged robot in MuJoCo: joint PD commands in, robot state and height scan out.

    Every control period of the robot description (``control_dt``, 20 ms for the Go2) the node
    steps physics (``sim_dt``, 2.5 ms) from the previous tick up to the graph clock, then
    publishes ``state`` (RobotState: joints in rad, rad/s, N·m; IMU; foot contacts in N;
    ground-truth base pose and twist), ``clock`` (Clock: simulated time) and ``height_scan``
    (HeightScan, m, 1.6 x 1.0 m grid at 0.1 m around the base, or around ``scan_center``: the
    policy contract's ``height_scan`` ``center`` option). A first state is published on
    activation. Simulated time 0 is the graph time of activation, so in a sim-clock graph the
    simulation runs in lockstep with the graph.

    ``command`` (JointCommand with the HAL contract's meaning, ``krabgraph.nodes.hal``: every
    joint once, by name, any order) sets the targets of ``tau = kp (q* - q) + kd (qd* - qd) +
    tau_ff`` applied at physics rate and limited by the motor torque-speed line (see
    ``krabgraph.nodes.mujoco.physics``). Empty velocity, effort, kp or kd arrays mean 0, 0 and the
    description's gains. Invalid commands (unknown, missing or repeated joints, wrong lengths,
    non-finite values, negative gains) are rejected, logged once per reason, and the last valid
    targets stay. Until the first valid command the robot holds its default
    pose with the description's gains. With ``depth_hz`` > 0 a forward depth image (58 x 87,
    m along the optical axis, 0 = no return within 2 m) is published on ``depth_image``.

    ``terrain_params`` are passed to the terrain generator (``make_terrain(terrain, seed, **params)``,
    e.g. ``{step_height: 0.1, length: 12}`` for stairs). A scripted push: with ``push_at_s`` >= 0 the
    base gets a world-frame force ``push_impulse / push_duration_s`` at its center of mass from that
    simulated time for ``push_duration_s``, applied at physics rate (``MujocoRobotSim.push``).

    On a course (a terrain with obstacles and a finish line: ``parkour``) one INFO line says when
    the base passes each obstacle (its x beyond the obstacle's end, the base above the ground under
    it: ``passed 3/6: 0.30 m gap at t=...``) and one when it crosses the finish line;
    ``course_progress`` holds the count. With ``stop_at_finish`` the graph stops there; with
    ``time_limit_s`` > 0 it stops at that simulated time (a course's time limit) with one line
    saying how far the robot got.
    """

    clock_source = "sim"
    status_mean_s = 1.0  # the status line's speeds and yaw rate: means over this much simulated time

    robot = Param(str, "go2", "robot description name or path")
    terrain = Param(str, "flat", " | ".join(TERRAIN_KINDS), choices=TERRAIN_KINDS)
    terrain_params = Param(dict, {}, "terrain generator parameters, e.g. {step_height: 0.1} (see terrain.py)")
    seed = Param(int, 0, "random seed for terrain and resets")
    actuator_delay_steps = Param(int, 0, "physics steps of actuator delay", ge=0)
    depth_hz = Param(float, 0.0, "depth image rate; 0 = no depth image", unit="Hz", ge=0)
    viewer = Param(
        bool, False, "open MuJoCo's viewer, following the robot (needs a display); closing it stops the graph"
    )
    video = Param(str, "", "write an MP4 of the run here (offscreen rendering, no display needed)")
    video_view = Param(
        list,
        [2.5, -20.0, 135.0],
        "camera following the base (video and viewer): [distance m, elevation deg, azimuth deg]",
        item=float,
    )
    video_fps = Param(float, 30.0, "video frame rate, in simulated time", unit="Hz", gt=0, le=120)
    push_at_s = Param(float, -1.0, "simulated time of a push on the base; < 0 = no push", unit="s")
    push_impulse = Param(list, [0.0, 0.0, 0.0], "push impulse [x, y, z], world frame", unit="N·s", item=float)
    push_duration_s = Param(float, 0.1, "duration of the push (force = impulse / duration)", unit="s", gt=0)
    scan_center = Param(
        list,
        [0.0, 0.0],
        "height-scan grid centre [x, y] in the base's yaw frame (the policy's contract)",
        unit="m",
        item=float,
    )
    stop_at_finish = Param(bool, False, "stop the graph once the base crosses the course's finish line (parkour)")
    time_limit_s = Param(
        float, 0.0, "stop the graph after this much simulated time, with the course progress; 0 = none", unit="s", ge=0
    )

    height_scan = Output(HeightScan)
    depth_image = Output(DepthImage)

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        """Push impulse, terrain parameters, and the MuJoCo model of the robot description on disk."""
        from krabgraph.nodes.assets import AssetError, resolve_asset
        from krabgraph.nodes.robots import RobotError, load_robot

        problems = super().check_params(params)
        view = params["video_view"]
        if len(view) != 3 or not all(math.isfinite(v) for v in view) or not view[0] > 0:
            problems.append(
                ParamProblem(
                    "video_view", f"video_view must be [distance m > 0, elevation deg, azimuth deg], got {view}"
                )
            )
        center = params["scan_center"]
        if len(center) != 2 or not all(math.isfinite(v) and abs(v) <= 2.0 for v in center):
            problems.append(
                ParamProblem("scan_center", f"scan_center must be 2 finite values [x, y] within 2 m, got {center}")
            )
        impulse = params["push_impulse"]
        if len(impulse) != 3 or not all(math.isfinite(v) for v in impulse):
            problems.append(
                ParamProblem("push_impulse", f"push_impulse must be 3 finite values [x, y, z] N·s, got {impulse}")
            )
        try:
            terrain = make_terrain(params["terrain"], seed=params["seed"], **params["terrain_params"])
        except TerrainError as exc:
            problems.append(ParamProblem("terrain_params", f"terrain_params: {exc}"))
        else:
            if params["stop_at_finish"] and terrain.finish_x is None:
                problems.append(
                    ParamProblem(
                        "stop_at_finish",
                        f"stop_at_finish: terrain {params['terrain']!r} has no finish line; the graph will not stop "
                        "by itself",
                        warning=True,
                    )
                )
        try:
            robot = load_robot(params["robot"])
            resolve_asset(robot.model, base_dir=robot.source.parent)
        except RobotError:
            pass  # reported with the graph's robot
        except AssetError as exc:
            problems.append(ParamProblem("robot", f"MuJoCo model of robot {params['robot']!r}: {exc}"))
        return problems

    def open(self) -> None:
        problems = [p for p in self.check_params(self.param_values()) if not p.warning]
        if problems:
            raise ParamError(f"{self.name}: {problems[0].message}")
        terrain = make_terrain(self.terrain, seed=self.seed, **self.terrain_params)
        self.sim = MujocoRobotSim(self.robot, terrain, actuator_delay_steps=self.actuator_delay_steps)
        self.course = terrain
        self.description = self.sim.robot
        self.scanner = HeightScanner(self.sim.scene, center=self.scan_center)
        self.camera = DepthCamera(self.sim.scene) if self.depth_hz > 0 else None
        self.sim_dt_ns = round(self.description.sim_dt * 1e9)
        self.recorder = None
        self.window = None
        if self.viewer:
            if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
                raise RuntimeError(
                    "viewer: true needs a display (DISPLAY is not set); use `video: run.mp4` "
                    "to record offscreen instead"
                )
            import mujoco.viewer

            from krabgraph.nodes.mujoco.video import follow_camera

            self.window = mujoco.viewer.launch_passive(self.sim.model, self.sim.data)
            with self.window.lock():  # follow the robot, as the video does
                follow_camera(self.window.cam, self.sim.scene.base_body, self.video_view)
        if self.video:
            from krabgraph.nodes.mujoco.video import VideoRecorder

            self.recorder = VideoRecorder(
                self.sim.model, self.video, self.description.base_body, fps=self.video_fps, view=self.video_view
            )

    def start(self) -> None:
        self.sim.reset(seed=self.seed)
        self.obstacles_passed = 0  # obstacles passed, in course order
        self.finished_at: float | None = None  # simulated time (s) the finish line was crossed
        self.stop_requested = False
        self.recent_speeds: deque[tuple[int, float, float, float]] = deque()  # (sim ns, vx, vy, yaw rate)
        if self.push_at_s >= 0:
            self.sim.push(self.push_impulse, self.push_duration_s, at_s=self.push_at_s)

    def extra_timers(self) -> None:
        if self.camera is not None:
            self.create_timer(1.0 / self.depth_hz, self.publish_depth)
        if self.recorder is not None:
            self.create_timer(1.0 / self.video_fps, self.capture_frame)

    # -- backend ----------------------------------------------------------------------------------
    def advance(self, until_ns: int) -> None:
        """Step physics up to graph time ``until_ns``."""
        target = (until_ns - self.t0_ns) // self.sim_dt_ns
        if target > self.sim.step_count:
            self.sim.step(int(target - self.sim.step_count))

    def read(self) -> RobotSnapshot:
        snap = self.sim.read_state()
        if self.status_period_s > 0:  # samples for the status line's means; none without a status line
            now, recent = self.sim_time_ns(), self.recent_speeds
            recent.append((now, float(snap.base_lin_vel[0]), float(snap.base_lin_vel[1]), float(snap.base_ang_vel[2])))
            while now - recent[0][0] >= self.status_mean_s * 1e9:
                recent.popleft()
        return snap

    def write(self, targets: JointTargets) -> None:
        self.sim.set_targets(targets)

    def sim_time_ns(self) -> int:
        return self.sim.step_count * self.sim_dt_ns

    def publish_sensors(self, snap: RobotSnapshot, stamp_ns: int) -> None:
        self.height_scan.publish(self.scanner.message(self.sim.data, stamp_ns=stamp_ns))

    def status_text(self) -> str:
        """Base position now; body-frame speeds and yaw rate as means over the last ``status_mean_s``
        of simulated time (one sample per control tick): the gait swings them within each step."""
        x, y, z = self.sim.read_state().base_pos
        recent = self.recent_speeds
        vx, vy, yaw_rate = (sum(s[k] for s in recent) / max(len(recent), 1) for k in (1, 2, 3))
        return (
            f"x={x:6.2f}m y={y:5.2f}m z={z:4.2f}m  {self.status_mean_s:g} s mean: vx={vx:5.2f}m/s vy={vy:5.2f}m/s "
            f"yaw rate={yaw_rate:5.2f}rad/s"
        )

    @property
    def course_progress(self) -> tuple[int, int, bool] | None:
        """(obstacles passed, obstacles, finish line crossed) on a course; None on other terrains."""
        if self.course.finish_x is None or not hasattr(self, "obstacles_passed"):
            return None
        return self.obstacles_passed, len(self.course.obstacles), self.finished_at is not None

    def track_course(self) -> None:
        """Log each obstacle passed and the finish line crossed; stop there if ``stop_at_finish``."""
        course = self.course
        if course.finish_x is None or self.finished_at is not None:
            return
        b = self.sim.scene.base_qpos_adr
        x, y, z = (float(v) for v in self.sim.data.qpos[b : b + 3])
        obstacles, t = course.obstacles, self.sim_time_ns() * 1e-9
        ahead = obstacles[self.obstacles_passed].x1 if self.obstacles_passed < len(obstacles) else course.finish_x
        if x <= ahead or z <= course.height_at(x, y):
            return
        while self.obstacles_passed < len(obstacles) and x > obstacles[self.obstacles_passed].x1:
            self.obstacles_passed += 1
            self.log.info(
                "passed %d/%d: %s at t=%.2f s",
                self.obstacles_passed,
                len(obstacles),
                obstacles[self.obstacles_passed - 1].name,
                t,
            )
        if self.obstacles_passed == len(obstacles) and x > course.finish_x:
            self.finished_at = t
            self.log.info(
                "finish line (x=%.2f m) crossed at t=%.2f s: %d/%d obstacles passed",
                course.finish_x,
                t,
                self.obstacles_passed,
                len(obstacles),
            )
            if self.stop_at_finish:
                self.log.info("stop_at_finish: stopping the graph")
                self.request_stop()

    def tick(self) -> None:
        super().tick()
        self.track_course()
        if self.time_limit_s > 0 and self.sim_time_ns() * 1e-9 >= self.time_limit_s and not self.stop_requested:
            self.stop_requested = True
            x = float(self.sim.data.qpos[self.sim.scene.base_qpos_adr])
            progress = self.course_progress
            where = f"; {progress[0]}/{progress[1]} obstacles passed" if progress and not progress[2] else ""
            self.log.info("time limit %.1f s reached at x=%.2f m%s: stopping the graph", self.time_limit_s, x, where)
            self.request_stop()
        if self.window is not None:
            if not self.window.is_running():
                self.log.info("viewer closed: stopping the graph")
                self.request_stop()
            else:
                self.window.sync()

    def capture_frame(self) -> None:
        self.advance(self.now_ns())
        self.recorder.capture(self.sim.data)

    def publish_depth(self) -> None:
        self.advance(self.now_ns())
        self.depth_image.publish(self.camera.message(self.sim.data, stamp_ns=self.now_ns()))

    def on_shutdown(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.log.info("wrote %s (%d frames)", self.video, self.recorder.frames)
        if self.window is not None:
            self.window.close()
        self.sim = None


__all__ = ["MujocoHal"]
