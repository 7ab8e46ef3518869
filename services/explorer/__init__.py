"""``dnsrace explore``: the real planner and enactors under a seeded scheduler."""
