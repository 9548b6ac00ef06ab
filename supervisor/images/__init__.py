"""Images: names pointing at a root descriptor in the content store (store.py)."""
