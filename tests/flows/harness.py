"""A temporary Prefect API (SQLite) for flow tests, patient enough for a loaded 2-core machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
from prefect.testing.utilities import prefect_test_harness

__all__ = ["local_prefect"]

# prefect_test_harness waits 30 s for its server by default; with torch training alongside it has taken longer.
STARTUP_TIMEOUT_S = 180


@contextmanager
def local_prefect(results: Path | None = None) -> Iterator[None]:
    """Flows inside run against a throwaway Prefect server; task results persist under `results` if given."""
    settings = {PREFECT_LOCAL_STORAGE_PATH: results} if results is not None else {}
    with prefect_test_harness(server_startup_timeout=STARTUP_TIMEOUT_S), temporary_settings(settings):
        yield
