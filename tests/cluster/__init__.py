"""Tests on a real Redis Cluster; a package, so its conftest does not shadow tests/conftest.py."""
