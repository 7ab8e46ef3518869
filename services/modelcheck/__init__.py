"""``dnsrace model-check``: the Promela model (models/dnsrace.pml) checked exhaustively by Spin."""
