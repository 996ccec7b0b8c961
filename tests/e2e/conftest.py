"""e2e fixtures: a migrated PostgreSQL database per test module."""
