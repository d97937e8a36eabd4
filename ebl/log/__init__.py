"""The append-only log of DESIGN §5: RFC 6962 tree (merkle), C2SP notes (note), and the ledger service."""
