"""The control service: the fault API and its client."""
