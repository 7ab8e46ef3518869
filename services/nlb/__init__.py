"""The Network Load Balancer of the cascade (issue 15): health checks, AZ DNS failover."""
