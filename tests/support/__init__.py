"""Test infrastructure shared across suites: real servers (PostgreSQL, app, simulator)."""
