"""Errors raised by the runtime, each carrying where it happened and how to fix it."""

from __future__ import annotations


class KrabgraphError(Exception):
    """Base class: the message is one complete, user-facing line."""


class ParamError(KrabgraphError):
    """A parameter value that is unknown, mistyped or out of range."""


class GraphError(KrabgraphError):
    """A graph file that cannot be loaded or validated; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class WireError(KrabgraphError):
    """Bytes on a topic that are not the expected message.

    ``kind`` is one of ``version``, ``type``, ``payload``, ``no_tag``, ``frames``: each kind is
    logged once per topic, later ones only counted.
    """

    def __init__(self, kind: str, message: str):
        self.kind = kind
        super().__init__(message)
