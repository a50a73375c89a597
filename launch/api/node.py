"""The node base class: typed ports and parameters, timers and lifecycle hooks.

A node is a plain class; it never touches sockets, serialization or threads::

    class Doubler(Node):
        '''Publishes twice the input.'''
        gain = Param(float, 2.0, "output/input ratio")
        x = Input(ArrayStamped)
        y = Output(ArrayStamped)

        def on_x(self, msg):
            self.y.publish(...)

Lifecycle (as in ROS 2 managed nodes): unconfigured → configure() → inactive → activate() →
active → deactivate() → inactive → shutdown() → finalized. Callbacks and timers run only while
active. Create timers in ``on_activate``; deactivation cancels them.

Parameters declared ``Param(..., dynamic=True)`` may change while the graph runs (``krabgraph param
set``): the runtime calls ``set_param`` on the node's own thread, which checks the value by the
Param's rules and calls the ``on_param_set`` hook (default: accept), where the node may refuse it or
make it take effect (e.g. cancel a timer and create another).

Runtime: the executor (or a ``NodeHarness``) attaches one ``NodeContext`` per node
(``launch/api/context.py``: graph clock, timer scheduling, stop requests, place in the graph); the node
uses it through ``now_ns()``, ``create_timer()``, ``request_stop()`` and ``clock_mode``, and the runtime
reads the node through ``lifecycle``, ``timers``, ``input_ports()``, ``output_ports()`` and
``param_values()``, never its private attributes.

Logging: ``self.log`` is the node's logger; ``self.log_once`` and ``self.log_throttled`` bound the
lines a problem repeated at the control rate writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from krabgraph.launch.api.checks import ParamProblem, RobotUse
from krabgraph.launch.api.context import ManualClock, NodeContext
from krabgraph.launch.api.errors import ParamError
from krabgraph.launch.api.params import Param
from krabgraph.launch.api.ports import Input, InputPort, Output, OutputPort

NODE_KINDS = ("hal", "sensor", "policy", "safety", "teleop", "source", "recorder", "bridge", "other")
SUPPRESSED_NOTE = " (+%d more since the last report)"  # appended by Node.log_throttled after a quiet period


class Timer:
    """A periodic callback on the graph clock, owned by a node.

    Timers due at the same instant fire in one global order, (deadline, the owner's ``rank``, the
    timer's creation ``order`` within its node): ``rank`` is the node's position in the graph file
    (its ``NodeContext.rank``, set by the executor), so the order of two timers never depends on
    which other nodes or timers exist.
    """

    __slots__ = ("callback", "cancelled", "count", "due_ns", "name", "node", "order", "period_ns", "rank")

    def __init__(
        self,
        node: Node,
        period_ns: int,
        callback: Callable[[], Any],
        due_ns: int,
        name: str,
        order: int,
        rank: int = 0,
    ):
        self.node = node
        self.period_ns = period_ns
        self.callback = callback
        self.due_ns = due_ns
        self.name = name
        self.rank = rank  # the owner's declaration order in the graph: first tie-break
        self.order = order  # creation order within the node: second tie-break
        self.cancelled = False
        self.count = 0

    def cancel(self) -> None:
        self.cancelled = True

    def __lt__(self, other: Timer) -> bool:
        return (self.due_ns, self.rank, self.order) < (other.due_ns, other.rank, other.order)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Node:
    """Base class of every krabgraph node. Subclasses declare ``Param``, ``Input`` and ``Output``."""

    kind: ClassVar[str] = "other"
    lifecycle: str  # unconfigured, inactive, activating, active, deactivating or finalized (read-only)
    _param_specs: ClassVar[dict[str, Param]] = {}
    _input_specs: ClassVar[dict[str, Input]] = {}
    _output_specs: ClassVar[dict[str, Output]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        params, inputs, outputs = {}, {}, {}
        for klass in reversed(cls.__mro__):
            for key, value in vars(klass).items():
                for table in (params, inputs, outputs):
                    table.pop(key, None)
                if isinstance(value, Param):
                    params[key] = value
                elif isinstance(value, Input):
                    inputs[key] = value
                elif isinstance(value, Output):
                    outputs[key] = value
        reserved = set(dir(Node)) | {"name", "log", "lifecycle"}
        for key in (*params, *inputs, *outputs):
            if key in reserved or key.startswith("_"):
                raise TypeError(f"{cls.__name__}: {key!r} is reserved by Node; choose another port/param name")
        dup = set(inputs) & set(outputs)
        if dup:
            raise TypeError(f"{cls.__name__}: {sorted(dup)} declared as both input and output")
        if cls.kind not in NODE_KINDS:
            raise TypeError(f"{cls.__name__}.kind must be one of {NODE_KINDS}, got {cls.kind!r}")
        cls._param_specs, cls._input_specs, cls._output_specs = params, inputs, outputs

    def __init__(self, name: str | None = None, **params: Any):
        cls = type(self)
        self.name = name or _snake(cls.__name__)
        self.log = logging.getLogger(f"krabgraph.{self.name}")
        self._params = self.validate_params(params)
        # Read-only for everyone but the transitions below: unconfigured, inactive, activating, active,
        # deactivating, finalized. A plain attribute, not a property: the executor reads it per message.
        self.lifecycle = "unconfigured"
        self.attach(NodeContext(ManualClock()))  # outside any executor (unit tests) until the runtime attaches
        self._timers: list[Timer] = []
        self._timer_order = 0
        self._changing_param = False  # inside on_param_set: an active node may create timers there
        self._reset_log_limits()
        self._inputs = {k: InputPort(self, spec) for k, spec in cls._input_specs.items()}
        self._outputs = {k: OutputPort(self, spec) for k, spec in cls._output_specs.items()}
        # ``self.<port>`` finds the port in the instance dict (Input and Output define only __get__,
        # so the instance wins): a dict lookup instead of a descriptor call on every access.
        vars(self).update(self._inputs)
        vars(self).update(self._outputs)

    # -- class introspection ------------------------------------------------------------------
    @classmethod
    def params(cls) -> dict[str, Param]:
        return dict(cls._param_specs)

    @classmethod
    def inputs(cls) -> dict[str, Input]:
        return dict(cls._input_specs)

    @classmethod
    def outputs(cls) -> dict[str, Output]:
        return dict(cls._output_specs)

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> list[ParamProblem]:
        """Static checks run by validation (`krabgraph check`) without building the node.

        ``params`` are validated, defaults filled in. Return one ``ParamProblem(param, message)``
        per problem (files that are missing, values that fit together badly); nothing may start.
        """
        return []

    @classmethod
    def robot_use(cls, params: dict[str, Any]) -> RobotUse | None:
        """What this node assumes about the robot, checked against the graph's robot.

        Default: a ``robot`` parameter names the robot description it is for; override to add
        joints or a control period (a policy's bundle), or return None.
        """
        if "robot" in cls._param_specs:
            return RobotUse("robot", robot=params["robot"])
        return None

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; raises ``ParamError`` on the first problem."""
        specs = cls._param_specs
        unknown = sorted(set(values) - set(specs))
        if unknown:
            known = ", ".join(specs) or "none"
            raise ParamError(f"unknown parameter {unknown[0]!r} for {cls.__name__} (known: {known})")
        out = {}
        for key, spec in specs.items():
            if key in values:
                out[key] = spec.validate(values[key])
            elif spec.required:
                raise ParamError(f"missing required parameter {key!r} for {cls.__name__}")
            else:
                out[key] = spec.default
        return out

    # -- the runtime's side: attach a context, read the node's state --------------------------
    def attach(self, context: NodeContext) -> None:
        """Connect the node to the runtime that runs it (the executor or a ``NodeHarness``): its graph
        clock, timer scheduling, stop requests and place in the graph. Once, before ``configure()``."""
        if self.lifecycle != "unconfigured":
            raise RuntimeError(f"{self.name}: attach a context before configure() (lifecycle is {self.lifecycle})")
        self._context = context
        # Bound straight to the clock's method: every stamp and delivery calls it, one call less.
        self.now_ns = context.clock.now_ns  # type: ignore[method-assign]

    @property
    def timers(self) -> list[Timer]:
        """The node's live timers, in creation order (a copy; deactivation cancels and forgets them)."""
        return [t for t in self._timers if not t.cancelled]

    def input_ports(self) -> dict[str, InputPort]:
        """This node's input ports by name (what ``self.<port>`` is)."""
        return dict(self._inputs)

    def output_ports(self) -> dict[str, OutputPort]:
        """This node's output ports by name (what ``self.<port>`` is)."""
        return dict(self._outputs)

    def param_values(self) -> dict[str, Any]:
        """The running parameter values by name, defaults filled in (a copy)."""
        return dict(self._params)

    @classmethod
    def dynamic_params(cls) -> list[str]:
        """The parameters this class lets change at run time (``Param(..., dynamic=True)``)."""
        return [name for name, spec in cls._param_specs.items() if spec.dynamic]

    def set_param(self, name: str, value: Any) -> Any:
        """Change dynamic parameter ``name`` while running; returns the value stored (ints widened to float).

        Call on the node's own thread (the runtime does). Raises ``ParamError`` naming the problem: an
        unknown or fixed parameter, a value its ``Param`` refuses, or a refusal by ``on_param_set``
        (then the old value stays).
        """
        cls = type(self)
        spec = cls._param_specs.get(name)
        if spec is None:
            known = ", ".join(cls._param_specs) or "none"
            raise ParamError(f"node {self.name!r} ({cls.__name__}) has no parameter {name!r}; parameters: {known}")
        if not spec.dynamic:
            dynamic = ", ".join(cls.dynamic_params()) or "none"
            raise ParamError(
                f"parameter {name!r} of node {self.name!r} ({cls.__name__}) is fixed while the graph runs; "
                f"dynamic ones: {dynamic} (set it in the graph file or with `launch --set`)"
            )
        new, old = spec.validate(value), self._params[name]
        self._params[name] = new
        self._changing_param = True
        try:
            self.on_param_set(name, new)
        except BaseException:
            self._params[name] = old
            raise
        finally:
            self._changing_param = False
        return new

    # -- runtime API for node authors -------------------------------------------------------
    def now_ns(self) -> int:
        """Graph clock in nanoseconds (sim time in lockstep graphs)."""
        return self._context.clock.now_ns()

    def now(self) -> float:
        """Graph clock in seconds."""
        return self.now_ns() * 1e-9

    @property
    def clock_mode(self) -> str:
        """Which clock runs the graph: ``"wall"``, ``"sim"`` (lockstep), ``"topic"`` (followed from a
        ``Clock`` topic) or ``"manual"`` (no executor: a unit test moves time by hand)."""
        return self._context.clock_mode

    def create_timer(self, period_s: float, callback: Callable[[], Any], name: str = "") -> Timer:
        """Call ``callback`` every ``period_s`` seconds of graph time, first one period from now.

        In ``on_activate``, or in ``on_param_set`` while active (a new period takes effect)."""
        if self.lifecycle != "activating" and not (self._changing_param and self.lifecycle == "active"):
            raise RuntimeError(f"{self.name}: create timers in on_activate (lifecycle is {self.lifecycle})")
        if not period_s > 0:
            raise ValueError(f"{self.name}: timer period must be > 0 s, got {period_s}")
        period_ns = round(period_s * 1e9)
        self._timer_order += 1
        self._timers = [t for t in self._timers if not t.cancelled]
        due_ns = self.now_ns() + period_ns
        ctx = self._context
        timer = Timer(self, period_ns, callback, due_ns, name or callback.__name__, self._timer_order, ctx.rank)
        self._timers.append(timer)
        if ctx.schedule is not None:
            ctx.schedule(timer)
        return timer

    def log_once(self, level: int, msg: str, *args: Any, key: Hashable | None = None) -> bool:
        """Log ``msg % args`` at ``level`` the first time ``key`` (default: ``msg``, the format string)
        comes; later calls with that key do nothing. Returns whether it logged.

        Pass varying values as ``args`` (or give a ``key``): every distinct key is remembered, from
        ``configure()`` for the node's life.
        """
        if key is None:
            key = msg
        if key in self._logged_keys:
            return False
        self._logged_keys.add(key)
        self.log.log(level, msg, *args)
        return True

    def log_throttled(self, period_s: float, level: int, msg: str, *args: Any, key: Hashable | None = None) -> bool:
        """Log ``msg % args`` at ``level`` at most once per ``period_s`` of graph time per ``key``
        (default: ``msg``, the format string); calls in between are only counted, and the next line
        logged ends with ``(+N more since the last report)``. Returns whether it logged.

        Measured on the graph clock (``now_ns()``), so it behaves alike under a lockstep sim clock
        and in a ``NodeHarness``. Keys are remembered as in ``log_once``.
        """
        if key is None:
            key = msg
        now = self.now_ns()
        mark = self._throttle_marks.get(key)  # [graph time of the last line, calls suppressed since]
        if mark is None:
            self._throttle_marks[key] = [now, 0]
        elif now - mark[0] < period_s * 1e9:
            mark[1] += 1
            return False
        else:
            suppressed, mark[0], mark[1] = mark[1], now, 0
            if suppressed:
                msg = (msg if args else msg.replace("%", "%%")) + SUPPRESSED_NOTE  # no args: not %-formatted
                args = (*args, suppressed)
        self.log.log(level, msg, *args)
        return True

    def request_stop(self, code: int = 0) -> None:
        """Ask the executor running this node to stop the graph (e.g. a viewer window was closed)."""
        stop = self._context.stop
        if stop is None:
            raise RuntimeError(f"{self.name}: request_stop() needs an executor")
        stop(code)

    # -- lifecycle hooks (override) ---------------------------------------------------------
    def on_configure(self) -> None:
        """Load resources; parameters are available."""

    def on_activate(self) -> None:
        """Start working: create timers, reset per-run state."""

    def on_deactivate(self) -> None:
        """Stop working; outputs may still publish here (e.g. a last safe command)."""

    def on_shutdown(self) -> None:
        """Release resources."""

    def on_param_set(self, name: str, value: Any) -> None:
        """Dynamic parameter ``name`` now holds ``value`` (already checked by its ``Param``): make it take
        effect; raise ``ParamError`` to refuse it (the old value is restored). Runs on the node's thread,
        active or not; while active it may create timers. Default: accept (the node reads the attribute)."""

    # -- lifecycle transitions (called by the executor or a test) ----------------------------
    def configure(self) -> None:
        self._expect("unconfigured", "configure")
        self._reset_log_limits()
        self.on_configure()
        self.lifecycle = "inactive"

    def activate(self) -> None:
        self._expect("inactive", "activate")
        self.lifecycle = "activating"
        try:
            self.on_activate()
        except BaseException:
            self._cancel_timers()
            self.lifecycle = "inactive"
            raise
        self.lifecycle = "active"

    def deactivate(self) -> None:
        self._expect("active", "deactivate")
        self.lifecycle = "deactivating"
        try:
            self.on_deactivate()
        finally:
            self._cancel_timers()
            self.lifecycle = "inactive"

    def shutdown(self) -> None:
        if self.lifecycle == "finalized":
            return
        if self.lifecycle == "active":
            self.deactivate()
        try:
            self.on_shutdown()
        finally:
            self.lifecycle = "finalized"

    def _expect(self, state: str, transition: str) -> None:
        if self.lifecycle != state:
            raise RuntimeError(f"{self.name}: cannot {transition} from {self.lifecycle!r} (needs {state!r})")

    def _reset_log_limits(self) -> None:
        """Forget what ``log_once`` and ``log_throttled`` have logged (at construction and configure)."""
        self._logged_keys: set[Hashable] = set()
        self._throttle_marks: dict[Hashable, list[int]] = {}

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.lifecycle}>"
