"""A small registry of the daemon's services, by name, handed to the gRPC servicers (and later
to plugins: images, networks, CRI) instead of the daemon object.

The daemon fills it at start (``config``, ``uuid``, ``store``, ``leases``, ``events``, ``tasks``);
a servicer takes what it needs by name, so what depends on what is visible in its constructor.
"""
from __future__ import annotations


class Registry:
    def __init__(self, **services):
        self._services: dict[str, object] = {}
        for name, service in services.items():
            self.add(name, service)

    def add(self, name: str, service) -> None:
        if name in self._services:
            raise KeyError(f"service {name!r} is already registered")
        self._services[name] = service

    def get(self, name: str):
        try:
            return self._services[name]
        except KeyError:
            raise KeyError(f"no service {name!r} (have: {', '.join(sorted(self._services))})") \
                from None

    def names(self) -> list[str]:
        return sorted(self._services)
