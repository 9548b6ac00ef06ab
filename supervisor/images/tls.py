"""TLS for registry connections: which certificates a pull trusts and presents, per host.

A registry host is verified against the system CAs plus what the daemon is told about that host:

- ``pull.certs_dir`` (``--registry-certs-dir``), laid out as containerd's and Docker's
  ``certs.d``: ``DIR/HOST[:PORT]/`` holds ``*.crt`` files (CA certificates trusted for that host)
  and ``NAME.cert`` + ``NAME.key`` pairs (a client certificate presented to it). The directory is
  read at each pull, so a CA dropped in needs no restart.
- the hosts file's ``"ca"`` (a path or a list of paths) and ``"client_cert"`` / ``"client_key"``.

Verification is never switched off: a host whose certificate does not verify is an error that
names it (plain HTTP is the explicit alternative, ``insecure``).
"""
from __future__ import annotations

import os
import ssl


def _certs_dir_files(certs_dir: str, netloc: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(CA files, client (cert, key) pairs) of ``certs_dir/netloc``; none when it is absent."""
    if not certs_dir or not netloc or "/" in netloc or netloc.startswith("."):
        return [], []
    d = os.path.join(certs_dir, netloc)
    try:
        names = sorted(os.listdir(d))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    cas = [os.path.join(d, n) for n in names if n.endswith(".crt")]
    pairs = [(os.path.join(d, n), os.path.join(d, n[:-5] + ".key")) for n in names
             if n.endswith(".cert") and n[:-5] + ".key" in names]
    return cas, pairs


def context_for(netloc: str, config, certs_dir: str = "") -> ssl.SSLContext:
    """A client context verifying ``netloc`` with the system CAs and the configured extras.
    ``config`` is the host's HostConfig (its ``ca``, ``client_cert``, ``client_key``) or None.
    OSError / ssl.SSLError for a configured file that cannot be loaded."""
    ctx = ssl.create_default_context()
    cas, pairs = _certs_dir_files(certs_dir, netloc)
    if config is not None:
        cas += list(config.ca)
        if config.client_cert:
            pairs.append((config.client_cert, config.client_key or config.client_cert))
    for ca in cas:
        ctx.load_verify_locations(cafile=ca)
    for cert, key in pairs[:1]:  # one identity per host: the first in name order
        ctx.load_cert_chain(cert, key)
    return ctx
