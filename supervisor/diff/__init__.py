"""Layers: apply.py unpacks one (tar, gzip, zstd) into a snapshot's directory, safely."""
