"""Fixtures shared with the engine tests: the Lithops sandbox."""

from tests.test_engines import lithops_sandbox  # noqa: F401
