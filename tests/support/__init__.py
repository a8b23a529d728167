"""Fixtures for server-backed backends (Redis, DynamoDB), registered by ``tests/conftest.py``."""
