"""Command-line argument types and option groups shared by the ``krabgraph`` verbs."""

from __future__ import annotations

import argparse
import math

from krabgraph.launch.graph.declaration import DEFAULT_TAP


def number(text: str, *, zero: bool = False, what: str = "number", example: str = "2") -> float:
    """A finite number > 0 (``zero``: ≥ 0) for argparse ``type=``; anything else is one usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero else value > 0)):
        bound = ">= 0" if zero else "> 0"
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite {what} {bound}, e.g. {example}")
    return value


def positive(text: str) -> float:
    """A finite number > 0."""
    return number(text)


def non_negative(text: str) -> float:
    """A finite number ≥ 0."""
    return number(text, zero=True)


def positive_seconds(text: str) -> float:
    """A command-line duration: a finite number of seconds > 0."""
    return number(text, what="number of seconds", example="10")


def add_tap_options(sp: argparse.ArgumentParser) -> None:
    """``--tap``, ``--server-key``, ``--key``, ``--timeout``: how a verb reaches a running graph."""
    sp.add_argument("--tap", default=DEFAULT_TAP, metavar="ENDPOINT", help=f"the graph's tap (default {DEFAULT_TAP})")
    sp.add_argument("--server-key", default="", metavar="CERT", help="CURVE: the graph's public certificate")
    sp.add_argument("--key", default="", metavar="CERT", help="CURVE: your secret certificate")
    sp.add_argument("--timeout", type=float, default=3.0, metavar="S", help="wait this long for the graph")
