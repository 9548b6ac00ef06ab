"""The container labels that ask for a network (set by pyrunc-ctl's ``run``, read by the
manager at task create): a module of their own so the client imports four strings, not the
manager (which imports grpc through supervisor.errors)."""

LABEL = "io.pyrunc.network"
LABEL_PORTS = "io.pyrunc.network.ports"
LABEL_DNS = "io.pyrunc.network.dns"
LABEL_ALIASES = "io.pyrunc.network.aliases"   # more names peers know it by (a docker name)
