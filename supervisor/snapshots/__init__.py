"""Snapshotters: copy-on-write filesystems by key (store.py keeps the metadata and directories;
overlay.py and native.py say how a snapshot is laid out and mounted)."""
