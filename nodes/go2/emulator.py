"""A Go2 emulator: the MuJoCo simulation behind the real robot's low-level DDS interface.

Run it beside a graph that uses ``go2_hal``::

    python -m krabgraph.nodes.go2.emulator                      # loopback, domain 0, flat ground
    python -m krabgraph.nodes.go2.emulator --terrain steps --truth build/truth.csv

It subscribes ``rt/lowcmd`` (``LowCmd_``): a sample whose ``crc`` differs from the CRC32 over its
C layout is rejected (counted, logged once) and the previous targets stay, as on the robot. A
valid one sets, per motor slot, the PD targets that ``MujocoRobotSim`` applies at physics rate
(``tau = tau_ff + kp (q - q_meas) + kd (dq - dq_meas)``, limited by the motor's torque-speed
line); a motor not in FOC mode (0x01) is unpowered, and the stop values ``q = 2.146e9`` /
``dq = 16000`` disable the position / velocity term. Until the first valid command the robot
holds its default pose with the description's gains (the real robot would be under its own
sport-mode control or lying down).

It publishes ``rt/lowstate`` (``LowState_``) at ``state_hz`` (500 Hz, the Go2's rate) with joint
position, velocity and applied torque per motor slot, the IMU (quaternion w, x, y, z; gyroscope
rad/s; accelerometer m/s² with the gravity reaction; roll/pitch/yaw rad), ``foot_force`` = the
ground's normal force on each foot in N (the real sensor reports its own uncalibrated units),
``tick`` in ms since start, and the ``crc`` computed like LowCmd's.

Physics runs at the description's ``sim_dt`` (2.5 ms for the Go2), paced to the wall clock
(``time.monotonic``); if it falls more than ``MAX_LAG_S`` behind, it skips ahead (counted) rather
than running fast. ``--truth FILE`` writes the ground-truth base state as CSV at 50 Hz, stamped
with ``time.monotonic()`` (comparable across processes on one machine).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from krabgraph.nodes.go2.cdr import CdrPacker
from krabgraph.nodes.go2.crc import LOW_STATE_LAYOUT, record_crc, record_to_sample
from krabgraph.nodes.go2.dds import GO2_DOMAIN_ID, LOWCMD_TOPIC, LOWSTATE_TOPIC, open_participant, require_cyclonedds
from krabgraph.nodes.go2.motors import MotorMap

log = logging.getLogger("krabgraph.go2_emulator")

MAX_LAG_S = 0.25  # s behind the wall clock before physics skips ahead instead of catching up
TRUTH_HZ = 50.0
TRUTH_COLUMNS = ("t_monotonic_s", "sim_time_s", "x", "y", "z", "vx_body", "vy_body", "yaw_rate")


class Go2Emulator:
    """MuJoCo Go2 on DDS (see the module docstring). ``run()`` blocks; ``stop()`` ends it from any thread."""

    def __init__(
        self,
        robot: str = "go2",
        terrain: str = "flat",
        seed: int = 0,
        domain_id: int = GO2_DOMAIN_ID,
        interface: str = "lo",
        config_xml: str = "",
        state_hz: float = 500.0,
        actuator_delay_steps: int = 0,
        truth_path: str | Path | None = None,
    ):
        require_cyclonedds()
        from krabgraph.nodes.go2.idl import LowCmd_, LowState_
        from krabgraph.nodes.mujoco.physics import MujocoRobotSim
        from krabgraph.nodes.mujoco.terrain import make_terrain

        if not state_hz > 0:
            raise ValueError(f"state_hz must be > 0, got {state_hz}")
        self.sim = MujocoRobotSim(robot, make_terrain(terrain, seed=seed), actuator_delay_steps=actuator_delay_steps)
        self.sim.reset(seed=seed)
        self.motors = MotorMap(self.sim.robot)
        self.state_period = 1.0 / state_hz
        self.dds = open_participant(domain_id, interface, config_xml)
        try:
            self.reader = self.dds.reader(LOWCMD_TOPIC, LowCmd_)
            self.writer = self.dds.writer(LOWSTATE_TOPIC, LowState_, reliable=False)
        except Exception:
            self.dds.close()
            raise
        self.state_record = np.zeros((), dtype=LOW_STATE_LAYOUT)
        self.packer = CdrPacker(self.writer, LowState_, LOW_STATE_LAYOUT, lambda r: record_to_sample(r, LowState_))
        self.truth: TextIO | None = None
        if truth_path:
            Path(truth_path).parent.mkdir(parents=True, exist_ok=True)
            self.truth = open(truth_path, "w", buffering=1)  # noqa: SIM115 (closed in close())
            self.truth.write(",".join(TRUTH_COLUMNS) + "\n")
        self.commands = 0  # valid LowCmd samples applied
        self.crc_rejected = 0
        self.invalid_rejected = 0
        self.states = 0
        self.lag_skips = 0  # times physics skipped ahead after being starved of CPU
        self.skipped_s = 0.0  # wall time those skips left unsimulated
        self._reported: set[str] = set()
        self._stop_event = threading.Event()
        self._t0 = time.monotonic()

    # -- commands ---------------------------------------------------------------------------------
    def poll_commands(self) -> None:
        """Apply the newest valid ``LowCmd_`` that arrived since the last call (never waits)."""
        from krabgraph.nodes.go2.crc import low_cmd_crc
        from krabgraph.nodes.mujoco.physics import CommandError

        for sample in reversed(self.reader.take(N=8)):
            if not hasattr(sample, "motor_cmd"):
                continue
            if sample.crc != low_cmd_crc(sample):
                self.crc_rejected += 1
                self._report_once("crc", "rejected a LowCmd with a wrong crc; keeping the last valid targets")
                continue
            q, dq, kp, kd, tau = self.motors.read_low_cmd(sample)
            try:
                self.sim.set_command(self.motors.joint_names, q, velocity=dq, kp=kp, kd=kd, effort=tau)
            except CommandError as exc:
                self.invalid_rejected += 1
                self._report_once(f"invalid:{exc}", f"rejected a LowCmd ({exc}); keeping the last valid targets")
                continue
            self.commands += 1
            return

    # -- state ------------------------------------------------------------------------------------
    def publish_state(self) -> None:
        """Write one ``LowState_`` with the current simulated state (the CRC filled in)."""
        st = self.sim.read_state()
        rec = self.motors.fill_state_record(
            self.state_record, st.q, st.qd, st.tau, st.imu_quat, st.imu_gyro, st.imu_accel, st.foot_force[:, 2]
        )
        rec["tick"] = int(st.time * 1000) & 0xFFFFFFFF
        rec["crc"] = record_crc(rec)
        self.packer.write(rec)
        self.states += 1

    def record_truth(self, now: float) -> None:
        if self.truth is None:
            return
        st = self.sim.read_state()
        row = (now, st.time, *st.base_pos, *st.base_lin_vel[:2], st.base_ang_vel[2])
        self.truth.write(",".join(f"{v:.6f}" for v in row) + "\n")

    # -- loop -------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None, status_period_s: float = 1.0) -> None:
        """Step physics and publish states in wall time until ``stop()`` or ``duration_s`` elapse."""
        dt = self.sim.dt
        start = time.monotonic()
        end = start + duration_s if duration_s is not None else float("inf")
        next_step = next_state = next_truth = start
        next_status = start + status_period_s if status_period_s > 0 else float("inf")
        mark = (start, self.sim.step_count)
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= end:
                break
            if now >= next_step:
                if now - next_step > MAX_LAG_S:
                    self.lag_skips += 1
                    self.skipped_s += now - next_step
                    self._report_once("lag", f"physics fell over {MAX_LAG_S} s behind the wall clock; skipping ahead")
                    next_step = now
                self.poll_commands()
                self.sim.step(1)
                next_step += dt
            if now >= next_state:
                self.publish_state()
                next_state += self.state_period
                if next_state <= now:  # late by a whole period: no backlog of stale states, resync
                    next_state = now + self.state_period
            if now >= next_truth:
                self.record_truth(now)
                next_truth += 1.0 / TRUTH_HZ
            if now >= next_status:
                rtf = (self.sim.step_count - mark[1]) * dt / (now - mark[0])
                mark = (now, self.sim.step_count)
                self.log_status(rtf)
                next_status += status_period_s
            delay = min(next_step, next_state) - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def stop(self) -> None:
        self._stop_event.set()

    def log_status(self, rtf: float) -> None:
        st = self.sim.read_state()
        log.info(
            "t=%6.2fs  x=%6.2fm y=%5.2fm z=%4.2fm  vx=%5.2fm/s yaw rate=%5.2frad/s  rtf=%.2f  "
            "lowcmd ok=%d crc rejected=%d invalid=%d  lowstate=%d",
            st.time, *st.base_pos, st.base_lin_vel[0], st.base_ang_vel[2], rtf,
            self.commands, self.crc_rejected, self.invalid_rejected, self.states,
        )  # fmt: skip

    def summary(self) -> str:
        """Counters as ``key=value`` pairs (the CLI prints them on exit)."""
        return (
            f"sim_time={self.sim.time:.3f} lowcmd_ok={self.commands} crc_rejected={self.crc_rejected} "
            f"invalid_rejected={self.invalid_rejected} lowstate={self.states} "
            f"lag_skips={self.lag_skips} skipped_s={self.skipped_s:.3f}"
        )

    def _report_once(self, key: str, text: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            log.warning(text)

    def close(self) -> None:
        if self.truth is not None:
            self.truth.close()
            self.truth = None
        self.dds.close()

    def __enter__(self) -> Go2Emulator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_truth(path: str | Path) -> np.ndarray:
    """The ``--truth`` CSV as an array with columns ``TRUTH_COLUMNS``."""
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m krabgraph.nodes.go2.emulator",
        description="MuJoCo Go2 behind Unitree's low-level DDS interface (rt/lowcmd, rt/lowstate), in real time.",
    )
    p.add_argument("--robot", default="go2", help="robot description name or path")
    p.add_argument("--terrain", default="flat", help="flat | stairs | steps | parkour")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--domain-id", type=int, default=GO2_DOMAIN_ID, help="DDS domain id (default: 0, as the Go2)")
    p.add_argument("--interface", default="lo", help="network interface or IPv4 address; lo = loopback only")
    p.add_argument("--config-xml", default="", help="file with a complete CycloneDDS XML configuration")
    p.add_argument("--state-hz", type=float, default=500.0, help="rt/lowstate rate (Hz)")
    p.add_argument("--actuator-delay-steps", type=int, default=0, help="physics steps of actuator delay")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--truth", default="", help="write the ground-truth base state here (CSV, 50 Hz)")
    p.add_argument("--status-period", type=float, default=1.0, help="seconds between status lines; 0 = none")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    config_xml = Path(args.config_xml).read_text() if args.config_xml else ""
    try:
        emulator = Go2Emulator(
            args.robot, args.terrain, args.seed, args.domain_id, args.interface, config_xml,
            args.state_hz, args.actuator_delay_steps, args.truth or None,
        )  # fmt: skip
    except Exception as exc:
        print(f"go2 emulator: {exc}", file=sys.stderr)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: emulator.stop())
    with emulator:
        print(f"go2 emulator ready: domain {args.domain_id}, interface {args.interface!r}", flush=True)
        emulator.run(args.duration, args.status_period)
        print(f"go2 emulator done: {emulator.summary()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
