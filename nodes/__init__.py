"""krabgraph's node classes. ``REGISTRY`` maps the short names used in graph files to classes.

Entries are ``module:Class`` strings so that listing or validating a graph imports only the nodes
it uses (a graph without MuJoCo never imports mujoco).
"""

REGISTRY: dict[str, str] = {
    "fake_robot": "krabgraph.nodes.demo:FakeRobot",
    "hold_pose": "krabgraph.nodes.demo:HoldPose",
    "scripted_velocity": "krabgraph.nodes.command:ScriptedVelocity",
    "policy": "krabgraph.nodes.policy.node:PolicyNode",
    "mujoco_hal": "krabgraph.nodes.mujoco.hal:MujocoHal",
    "safety": "krabgraph.nodes.safety:Safety",
    "isaac_hal": "krabgraph.nodes.isaac.hal:IsaacHal",
    "go2_hal": "krabgraph.nodes.go2.hal:Go2Hal",
    "keyboard_teleop": "krabgraph.nodes.teleop.keyboard:KeyboardTeleop",
    "gamepad_teleop": "krabgraph.nodes.teleop.gamepad:GamepadTeleop",
    "recorder": "krabgraph.nodes.record.recorder:Recorder",
    "replay": "krabgraph.nodes.record.replay:Replay",
    "foxglove": "krabgraph.nodes.record.foxglove:FoxgloveBridge",
}
