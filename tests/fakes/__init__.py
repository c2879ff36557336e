"""Fakes of vendor libraries for tests (no GPU needed)."""
