"""Staff analytics: daily roll-ups, the dashboard and the liability report (DESIGN.md)."""
