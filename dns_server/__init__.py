"""The authoritative DNS server of dnsrace: answers the zone from memory, follows Redis.

Public API: :class:`~dns_server.server.DnsServer` (embeddable), :func:`~dns_server.server.serve`
(the process), :func:`~dns_server.answer.resolve` (the pure answer function).
"""
