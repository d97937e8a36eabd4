"""Storage: SQLModel tables and the repositories that are the only place speaking SQL."""
