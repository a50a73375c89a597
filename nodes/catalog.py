"""krabgraph's robot catalog: what graph validation asks about robots and policy bundles.

Registered under the ``krabgraph.robots`` entry point (pyproject.toml), so that ``krabgraph check``
(``launch/graph/checks.py``) resolves a robot name without the graph layer importing
``krabgraph.nodes``. An outside package with robot descriptions of its own can register a catalog
the same way (``describe`` and ``bundles_for``, see ``launch/graph/checks.py: RobotCatalog``).
"""

from __future__ import annotations

from krabgraph.launch.api.errors import KrabgraphError


class RobotCatalog:
    """Robot descriptions (``nodes/robots``) and the policy bundles shipped for them (``nodes/policy``)."""

    def describe(self, name: str):  # -> krabgraph.nodes.robots.RobotDescription
        """The description ``name`` (a name or a path); raises ``ValueError`` (``RobotError``) with the reason."""
        from krabgraph.nodes.robots import load_robot

        return load_robot(name)

    def bundles_for(self, robot: str) -> list[str]:
        """The shipped policy bundles made for ``robot`` (for the fix in a mismatch message)."""
        from krabgraph.nodes.policy.contract import known_bundles, load_contract

        found = []
        for bundle in known_bundles():
            try:
                if load_contract(bundle).robot == robot:
                    found.append(bundle)
            except KrabgraphError:
                continue
        return found


CATALOG = RobotCatalog()
