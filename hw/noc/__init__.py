"""Network on chip: 5-port routers wired into a W x H mesh (see ``docs/noc.md``)."""

from .mesh import Mesh
from .router import HOST_KINDS, PORT_NAMES, Port, Router, connected_ports, route_port

__all__ = ["HOST_KINDS", "PORT_NAMES", "Mesh", "Port", "Router", "connected_ports", "route_port"]
