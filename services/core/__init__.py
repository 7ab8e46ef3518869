"""Pure models of the incident: names, records, plans, events, faults, invariants. No I/O."""
