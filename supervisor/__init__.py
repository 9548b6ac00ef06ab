"""pyrunc's supervisor: a containerd-compatible gRPC daemon, per-container shims, and a client.

Importing this package must stay cheap: the shim imports ``supervisor.shim`` and ``supervisor.wire``
with ``python -S`` and nothing heavier may come along (no grpc, no protobuf here).
"""
__version__ = "0.1.0"
