"""The append-only log (docs/ledger.md): RFC 6962 tree (merkle), C2SP notes (note), and the ledger service."""
