"""Benchmarks of dnsrace: scripts that measure, print figures and write a JSON result.

Not tests: ``python -m bench.run`` (or ``dnsrace bench`` once wired) runs every comparison
in one sequence on one machine, so that the ratios between servers hold even when the
machine is shared.  ``docs/benchmarks.md`` holds the figures as measured and the commands.
"""
