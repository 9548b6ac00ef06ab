"""The content store: blobs by digest, written through resumable ingests (see store.py)."""
