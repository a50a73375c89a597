"""Operator velocity commands: keyboard and gamepad teleop nodes (kind ``teleop``).

Each publishes ``cmd_vel`` (VelocityCommand, body frame: m/s, m/s, rad/s) at ``rate_hz`` with a
deadman: without operator input for ``deadman_s`` the command is zero (and the set-point is
reset, so the robot never resumes on its own). The output port is named like
``scripted_velocity``'s, so ``--replace command=keyboard_teleop`` swaps the source in a graph.
"""
