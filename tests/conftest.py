"""Two kinds of async tests live side by side. Most are Trio tests: pytest-trio's ``trio_mode``
runs every ``async def`` test under ``trio.run``. Tests of what users import (the client, the
remote worker) are marked ``pytest.mark.anyio`` instead, and AnyIO's plugin runs each of them
once per backend of ``anyio_backend``: asyncio and Trio. ``trio_mode`` would claim those too, so
its mark is taken off them here. (AnyIO tests use sync fixtures only: trio_mode claims async
fixtures.)"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("anyio") is not None:
            item.own_markers[:] = [mark for mark in item.own_markers if mark.name != "trio"]
