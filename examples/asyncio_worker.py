"""Handlers on asyncio-only APIs: ``raftq worker --loop asyncio --import asyncio_worker``."""

import asyncio

import raftq

app = raftq.App()


@app.handler("resolve")
async def resolve(job: raftq.JobContext, host: str) -> object:
    """Resolve ``host`` with asyncio's own loop and timeout, as aiohttp or asyncpg would."""
    async with asyncio.timeout(10):
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    return {"host": host, "addresses": sorted({info[4][0] for info in found})}
