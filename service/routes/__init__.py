"""One router per resource: search, items, system (index info, health, metrics, admin)."""
