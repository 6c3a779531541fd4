"""Fixtures shared with the engine tests (the Lithops sandbox) and the multi-site ones (sky)."""

from tests.multisite.conftest import sky, sky_services  # noqa: F401
from tests.test_engines import lithops_sandbox  # noqa: F401
