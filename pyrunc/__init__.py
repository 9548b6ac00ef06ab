"""pyrunc: an OCI runtime."""

SPEC_VERSION = "1.3.0"  # the runtime-spec version implemented: the one place it is written
