"""Test suites that plugins (built-in or third-party) run against themselves."""
