"""Storage tests: the backend contract suite and backend-specific tests."""
