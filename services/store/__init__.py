"""Redis stores: the zone (our Route 53), plans, history, faults, load-balancer health."""
