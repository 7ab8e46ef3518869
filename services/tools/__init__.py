"""The ``dnsrace`` CLI and the operator's tools: demo, race, scenarios, matrix, soak, watch."""
