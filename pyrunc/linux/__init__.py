"""The kernel layer: thin wrappers over syscalls and kernel files."""
