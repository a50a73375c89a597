"""Cyclone DDS plumbing shared by the Go2 HAL and the robot emulator: configuration, participants, QoS.

Topics (Unitree's names and types): ``rt/lowcmd`` carries ``unitree_go::msg::dds_::LowCmd_`` to
the robot, ``rt/lowstate`` carries ``LowState_`` from it. The Go2 is on DDS domain 0.

Network configuration (``dds_config``):

- ``interface`` ``"lo"`` (also ``""``, ``"localhost"``, ``"127.0.0.1"``): loopback only. Cyclone uses
  the loopback interface alone, multicast is off (``AllowMulticast false``) and discovery is
  unicast to 127.0.0.1 only, so nothing is sent off the machine. Cyclone still binds its unicast
  *receive* sockets to the wildcard address (0.0.0.0, hard-coded in its UDP transport); they only
  get what someone addresses to them.
- any other name (``enp3s0``, ``eth0``) or IPv4 address: that interface, with multicast discovery
  as the robot uses it (Unitree's own configuration).
- ``config_xml``: a complete CycloneDDS XML configuration, used verbatim.

A domain is created explicitly with its configuration before any participant (a bare
``DomainParticipant`` would fall back to Cyclone's defaults: every interface, multicast). Domains
are reference-counted per process: participants opened with the same id and configuration share
one; the last ``close`` deletes it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

LOWCMD_TOPIC = "rt/lowcmd"
LOWSTATE_TOPIC = "rt/lowstate"
GO2_DOMAIN_ID = 0
LOOPBACK_NAMES = ("", "lo", "localhost", "127.0.0.1")

INSTALL_HINT = (
    "the Go2 DDS interface needs the Python package 'cyclonedds' (Eclipse Cyclone DDS): "
    "pip install 'cyclonedds>=11.0.1,<12' or install krabgraph with the 'robot' extra"
)


def require_cyclonedds() -> None:
    """Raise one clear ``ImportError`` if Cyclone DDS for Python is not installed."""
    try:
        import cyclonedds.domain  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from None


def is_loopback(interface: str) -> bool:
    return interface.strip() in LOOPBACK_NAMES


def dds_config(interface: str = "lo", config_xml: str = "") -> str:
    """CycloneDDS XML configuration for ``interface`` (see the module docstring)."""
    if config_xml.strip():
        return config_xml
    iface = interface.strip()
    if is_loopback(iface):
        return (
            "<CycloneDDS><Domain Id='any'><General>"
            "<Interfaces><NetworkInterface address='127.0.0.1' multicast='false'/></Interfaces>"
            "<AllowMulticast>false</AllowMulticast>"
            "</General><Discovery>"
            "<ParticipantIndex>auto</ParticipantIndex><MaxAutoParticipantIndex>32</MaxAutoParticipantIndex>"
            "<Peers><Peer Address='127.0.0.1'/></Peers>"
            "</Discovery></Domain></CycloneDDS>"
        )
    try:
        ipaddress.IPv4Address(iface)
        attr = "address"
    except ValueError:
        names = [name for _, name in socket.if_nameindex()]
        if iface not in names:
            raise ValueError(f"network interface {iface!r} not found (interfaces here: {', '.join(names)})") from None
        attr = "name"
    return (
        "<CycloneDDS><Domain Id='any'><General><Interfaces>"
        f"<NetworkInterface {attr}='{iface}' priority='default' multicast='default'/>"
        "</Interfaces></General></Domain></CycloneDDS>"
    )


@dataclass
class _DomainSlot:
    config: str
    domain: Any
    users: int = 0


_domains: dict[int, _DomainSlot] = {}
_lock = threading.Lock()


def _acquire_domain(domain_id: int, config: str) -> None:
    from cyclonedds.core import DDSException
    from cyclonedds.domain import Domain

    with _lock:
        slot = _domains.get(domain_id)
        if slot is None:
            try:
                slot = _DomainSlot(config, Domain(domain_id, config))
            except DDSException as exc:
                raise RuntimeError(f"could not create DDS domain {domain_id} with this configuration: {exc}") from None
            _domains[domain_id] = slot
        elif slot.config != config:
            raise RuntimeError(
                f"DDS domain {domain_id} is already open in this process with another network configuration; "
                "use one interface (or config_xml) per domain id and process"
            )
        slot.users += 1


def _release_domain(domain_id: int) -> None:
    with _lock:
        slot = _domains.get(domain_id)
        if slot is None:
            return
        slot.users -= 1
        if slot.users <= 0:
            del _domains[domain_id]
            _delete(slot.domain)


def _delete(entity: Any) -> None:
    """Delete a Cyclone DDS entity (and its children) now rather than at garbage collection."""
    if entity is not None:
        entity.__del__()


@dataclass
class Participant:
    """A DDS participant on one domain, with the readers and writers it created (closed together)."""

    domain_id: int
    config: str
    participant: Any = None
    entities: list[Any] = field(default_factory=list)

    def reader(self, topic_name: str, data_type: type, *, reliable: bool = False, depth: int = 1) -> Any:
        """A DataReader keeping the ``depth`` newest samples; best-effort unless ``reliable``."""
        from cyclonedds.qos import Policy, Qos
        from cyclonedds.sub import DataReader
        from cyclonedds.topic import Topic
        from cyclonedds.util import duration

        reliability = Policy.Reliability.BestEffort
        if reliable:
            reliability = Policy.Reliability.Reliable(duration(milliseconds=100))
        topic = Topic(self.participant, topic_name, data_type)
        reader = DataReader(self.participant, topic, qos=Qos(reliability, Policy.History.KeepLast(depth)))
        self.entities += [topic, reader]
        return reader

    def writer(self, topic_name: str, data_type: type, *, reliable: bool = True) -> Any:
        """A DataWriter keeping the newest sample. Reliable writers (which also match best-effort
        readers) never wait for acknowledgements: ``max_blocking_time`` is 0."""
        from cyclonedds.pub import DataWriter
        from cyclonedds.qos import Policy, Qos
        from cyclonedds.topic import Topic
        from cyclonedds.util import duration

        reliability = Policy.Reliability.Reliable(duration(seconds=0)) if reliable else Policy.Reliability.BestEffort
        topic = Topic(self.participant, topic_name, data_type)
        writer = DataWriter(self.participant, topic, qos=Qos(reliability, Policy.History.KeepLast(1)))
        self.entities += [topic, writer]
        return writer

    def close(self) -> None:
        """Delete readers, writers and the participant; release the domain."""
        if self.participant is None:
            return
        for entity in reversed(self.entities):
            _delete(entity)
        self.entities.clear()
        _delete(self.participant)
        self.participant = None
        _release_domain(self.domain_id)


def open_participant(domain_id: int = GO2_DOMAIN_ID, interface: str = "lo", config_xml: str = "") -> Participant:
    """A participant on ``domain_id`` over ``interface`` (see ``dds_config``). Close it when done."""
    require_cyclonedds()
    from cyclonedds.core import DDSException
    from cyclonedds.domain import DomainParticipant

    if not 0 <= domain_id <= 232:
        raise ValueError(f"DDS domain id must be in 0..232, got {domain_id}")
    config = dds_config(interface, config_xml)
    _acquire_domain(domain_id, config)
    try:
        participant = DomainParticipant(domain_id)
    except DDSException as exc:
        _release_domain(domain_id)
        raise RuntimeError(f"could not create a DDS participant on domain {domain_id}: {exc}") from None
    return Participant(domain_id, config, participant)


__all__ = [
    "GO2_DOMAIN_ID",
    "INSTALL_HINT",
    "LOWCMD_TOPIC",
    "LOWSTATE_TOPIC",
    "Participant",
    "dds_config",
    "is_loopback",
    "open_participant",
    "require_cyclonedds",
]
