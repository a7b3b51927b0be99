"""Maintenance scripts of the repository (a package, so that the tests import them normally)."""
