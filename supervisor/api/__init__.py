"""The gRPC services, one module per containerd service; ``register`` adds them all to a server."""


def register(server, services) -> None:
    """Add every servicer to ``server``; each takes what it needs from ``services`` (a
    supervisor.services.Registry)."""
    from supervisor.api import (containers, content, diff, events, health, images, leases, meta,
                                namespaces, pull, snapshots, tasks)
    for mod in (meta, namespaces, containers, tasks, events, leases, health, content, snapshots,
                diff, images, pull):
        mod.register(server, services)
    from supervisor.api import networks
    networks.register(server, services)
