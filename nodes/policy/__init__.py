"""Learned policies: bundle contracts, observation building, inference backends, the policy node.

``load_contract("go2_walk")`` → ``Contract``; ``ObservationBuilder(contract)`` builds the
observation from messages; ``load_backend(contract)`` runs the network; ``contract.actions``
maps its output to joint targets by name. ``PolicyNode`` (``krabgraph.nodes.policy.node``) wires
them into a graph.
"""

from krabgraph.nodes.policy.backends import PolicyBackend, load_backend
from krabgraph.nodes.policy.contract import (
    ActionError,
    ActionMap,
    Contract,
    ContractError,
    ObservationTerm,
    known_bundles,
    load_contract,
)
from krabgraph.nodes.policy.observations import (
    TERMS,
    MissingInputError,
    ObservationBuilder,
    ObservationError,
    PolicyState,
    observation_term,
)

__all__ = [
    "TERMS",
    "ActionError",
    "ActionMap",
    "Contract",
    "ContractError",
    "MissingInputError",
    "ObservationBuilder",
    "ObservationError",
    "ObservationTerm",
    "PolicyBackend",
    "PolicyState",
    "known_bundles",
    "load_backend",
    "load_contract",
    "observation_term",
]
