"""``--containers``: every Procfile process in a container of its own (docs/containers.md)."""
