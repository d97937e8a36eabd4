"""eBL corridor: the domain library (no web framework here)."""
