"""pyrunc: an OCI runtime."""
