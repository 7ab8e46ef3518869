"""The DNS Planner."""
