"""The dashboard's tables: daily roll-ups per program (docs/dashboard.md)."""
