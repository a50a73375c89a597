"""What a node class's static hooks return (``Node.check_params``, ``Node.robot_use``).

``krabgraph check`` (``launch/graph/checks.py``) runs the hooks on every node's validated parameters
and turns the answers into errors and warnings at the right lines of the graph file.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ParamProblem:
    """One finding of ``Node.check_params``: the parameter it is about ("" = the node) and what to do."""

    param: str
    message: str
    warning: bool = False  # reported by `krabgraph check` but does not stop the graph


@dataclass(frozen=True)
class RobotUse:
    """What a node assumes about the robot, compared with the graph's robot by validation.

    ``robot``: a robot description name or path (its joints and control period are then the
    description's); ``joints``: joints the node needs (``exact``: the joints it has, e.g. a HAL's);
    ``control_dt``: the period it runs at or was trained at (s); ``param``: the parameter they come
    from (errors point at its line); ``what``: how errors name it, e.g. "policy bundle 'go2_walk'".
    """

    param: str
    robot: str | None = None
    joints: tuple[str, ...] | None = None
    exact: bool = False
    control_dt: float | None = None
    what: str = ""
