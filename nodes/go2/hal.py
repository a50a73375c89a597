"""The real Unitree Go2 as a krabgraph HAL node: Unitree's low-level DDS interface (rt/lowcmd, rt/lowstate)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from krabgraph.launch import Param
from krabgraph.nodes.go2.dds import GO2_DOMAIN_ID, LOWCMD_TOPIC, LOWSTATE_TOPIC, open_participant, require_cyclonedds
from krabgraph.nodes.go2.motors import MotorMap
from krabgraph.nodes.hal import Hal, JointTargets, RobotSnapshot
from krabgraph.nodes.robots import load_robot


class Go2Hal(Hal):
    """Unitree Go2 over DDS: joint PD commands out as ``rt/lowcmd``, robot state in from ``rt/lowstate``.

    Same ports as the MuJoCo HAL, so a graph swaps one for the other with ``class:``.

    ``command`` (JointCommand with the HAL contract's meaning, ``krabgraph.nodes.hal``: every joint
    of the robot exactly once, by name; empty velocity/effort/kp/kd mean 0, 0 and the description's
    gains) is converted at once into a
    ``LowCmd_``: joint ``j`` goes to motor slot ``motor_index[j]`` of the robot description, every
    motor in FOC mode, unused slots with zero gains; the CRC is computed as the robot checks it
    (``krabgraph.nodes.go2.crc``) and the sample is written. Invalid commands are rejected (logged
    once per reason, counted) and nothing is sent for them.

    Every ``control_dt`` of the description (20 ms for the Go2) the node takes the newest
    ``LowState_`` (the robot publishes at 500 Hz) and publishes ``clock`` (the graph's wall time),
    then ``state`` (RobotState: joint position, velocity and estimated torque by name, in rad,
    rad/s, N·m; IMU quaternion w, x, y, z, gyroscope rad/s, accelerometer m/s²; foot contacts where
    ``foot_force`` exceeds ``contact_threshold``, the force in ``contacts.force[:, 2]`` in the
    sensor's units; ``has_base = False``: the robot measures no ground-truth base state). Without a
    new ``LowState_`` since the last tick nothing is published, so a downstream safety node sees the
    state go stale; a warning is logged after
    ``state_timeout_s``. The node never publishes its own commands as the joint state.

    Never blocks the graph: the reader keeps only the newest sample and is read without waiting
    (``take``) on the timer; the writer keeps one sample and never waits for acknowledgements.
    Needs the wall clock (refuses a sim or topic clock). ``thread: true`` also works (DDS calls
    are thread-safe) and isolates the ~0.5 ms of (de)serialization per tick from other nodes.

    Network: ``interface`` ``lo`` (default) keeps DDS on loopback (for the emulator,
    ``python -m krabgraph.nodes.go2.emulator``); for the robot give the interface wired to it
    (e.g. ``enp3s0``) or its IPv4 address; ``config_xml`` overrides both with a full CycloneDDS
    configuration. See ``krabgraph.nodes.go2.dds`` and docs/sim-to-real.md.
    """

    clock_source = "wall"

    robot = Param(str, "go2", "robot description name or path (joint names, motor_index, gains)")
    domain_id = Param(int, GO2_DOMAIN_ID, "DDS domain id (the Go2 uses 0)", ge=0, le=232)
    interface = Param(str, "lo", "network interface to the robot (name or IPv4 address); lo = loopback only")
    config_xml = Param(str, "", "complete CycloneDDS XML configuration; overrides interface")
    contact_threshold = Param(
        float, 10.0, "foot_force above this counts as contact (emulator: N; robot: uncalibrated)", unit="sensor units"
    )
    state_timeout_s = Param(float, 0.1, "warn when no LowState arrived for this long", unit="s", gt=0)
    check_state_crc = Param(bool, False, "drop LowState samples whose crc field does not match their content")

    def open(self) -> None:
        mode = self.clock_mode
        if mode not in ("wall", "manual"):
            raise RuntimeError(f"go2_hal drives a real-time robot: run the graph on the wall clock (clock is {mode!r})")
        require_cyclonedds()
        from krabgraph.nodes.go2.idl import LowCmd_, LowState_

        self.description = load_robot(self.robot)
        self.motors = MotorMap(self.description)
        self.dds = open_participant(self.domain_id, self.interface, self.config_xml)
        try:
            self.reader = self.dds.reader(LOWSTATE_TOPIC, LowState_)
            self.writer = self.dds.writer(LOWCMD_TOPIC, LowCmd_)
        except Exception:
            self.dds.close()
            raise
        self.low_cmd = LowCmd_()
        self.write_errors = 0
        self.crc_errors = 0
        self._foot_names = list(self.motors.foot_names)

    def start(self) -> None:
        self.last_state_ns: int | None = None
        self._stale_logged = False
        self._counts = [0, 0]  # states, commands since the last status line

    # -- state ------------------------------------------------------------------------------------
    def _take_newest(self) -> Any | None:
        from krabgraph.nodes.go2.crc import low_state_crc

        samples = self.reader.take(N=8)
        for sample in reversed(samples):
            if not hasattr(sample, "motor_state"):  # an InvalidSample (e.g. the writer went away)
                continue
            if self.check_state_crc and sample.crc != low_state_crc(sample):
                self.crc_errors += 1
                self.log_once(logging.ERROR, "dropped a LowState with a wrong crc (further ones are counted)")
                continue
            return sample
        return None

    def read(self) -> RobotSnapshot | None:
        """The newest LowState as a snapshot; None (and a warning once it is stale) when none arrived."""
        now = self.now_ns()
        sample = self._take_newest()
        if sample is None:
            since = self.last_state_ns if self.last_state_ns is not None else self.t0_ns
            if (now - since) * 1e-9 > self.state_timeout_s and not self._stale_logged:
                self._stale_logged = True
                what = "no LowState yet" if self.last_state_ns is None else "LowState stopped"
                self.log.warning(
                    "%s on %s (domain %d, interface %r) for %.2f s: is the robot (or emulator) up?",
                    what, LOWSTATE_TOPIC, self.domain_id, self.interface, (now - since) * 1e-9,
                )  # fmt: skip
            return None
        if self._stale_logged:
            self.log.info("LowState flowing again")
            self._stale_logged = False
        self.last_state_ns = now
        self._counts[0] += 1
        return self._snapshot(sample, now)

    def _snapshot(self, sample: Any, stamp_ns: int) -> RobotSnapshot:
        """The snapshot of a LowState sample (no ground-truth base on the real robot)."""
        r = self.motors.read_low_state(sample)
        force = np.zeros((len(self._foot_names), 3))
        force[:, 2] = r["foot_force"]  # the Go2 reports one foot-force value per foot
        return RobotSnapshot(
            time=stamp_ns * 1e-9,
            joint_names=tuple(self.motors.joint_names),
            q=r["q"],
            qd=r["dq"],
            tau=r["tau"],
            imu_quat=r["quat"],
            imu_gyro=r["gyro"],
            imu_accel=r["accel"],
            foot_names=tuple(self._foot_names),
            foot_contact=np.asarray(r["foot_force"]) > self.contact_threshold,
            foot_force=force,
        )

    # -- commands ---------------------------------------------------------------------------------
    def write(self, targets: JointTargets) -> None:
        """Send validated targets as one ``LowCmd_`` (CRC set); a failed write is counted and logged once."""
        from cyclonedds.core import DDSException

        from krabgraph.nodes.go2.crc import low_cmd_crc

        cmd = self.motors.fill_low_cmd(self.low_cmd, self.motors.slot_targets(targets))
        cmd.crc = low_cmd_crc(cmd)
        try:
            self.writer.write(cmd)
        except DDSException as exc:
            self.write_errors += 1
            self.log_once(logging.ERROR, "LowCmd write failed (%s); further failures are counted", exc)
            return
        self._counts[1] += 1

    # -- status -----------------------------------------------------------------------------------
    def status_text(self) -> str:
        states, cmds = self._counts
        self._counts = [0, 0]
        age = "none" if self.last_state_ns is None else f"{(self.now_ns() - self.last_state_ns) * 1e-6:.0f} ms"
        return (
            f"go2 over DDS: states {states / self.status_period_s:.0f}/s (newest {age} old)  "
            f"commands {cmds / self.status_period_s:.0f}/s  write errors={self.write_errors}  "
            f"crc errors={self.crc_errors}"
        )

    def on_shutdown(self) -> None:
        dds = getattr(self, "dds", None)
        if dds is not None:
            dds.close()
            self.dds = None


__all__ = ["Go2Hal"]
