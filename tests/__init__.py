"""The test suite (a package, so that ``tests.reference`` imports normally)."""
