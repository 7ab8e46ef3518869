"""The load-balancer fleet: DynamoDB's JSON protocol on every load balancer."""
