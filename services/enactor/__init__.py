"""The DNS Enactor: decisions (pure), the walk, its metrics, its process."""
