"""The review tests reuse the wiring tests' stored flight weeks (a real data-layer backfill, once per session)."""

from ml_platform_tests.defs.conftest import data_home  # noqa: F401
