"""e2e tests start real processes; the shared fixtures (a migrated PostgreSQL database and a private
Redis database for the session) are in tests/conftest.py."""
