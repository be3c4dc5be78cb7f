"""Enqueue from synchronous code through one raftq.SyncClient, shared by threads (README)."""

import os
from concurrent.futures import ThreadPoolExecutor

from tasks import resize

import raftq

with raftq.SyncClient(os.environ.get("RAFTQ_CLUSTER", "127.0.0.1:7100")) as client:
    job_id = client.enqueue("echo", {"file": "a.png"})
    print(client.wait(job_id, timeout=30).result)
    with ThreadPoolExecutor(8) as threads:  # one client serves every thread at once
        ids = list(threads.map(lambda n: resize.enqueue_sync(client, file=f"{n}.png"), range(8)))
    print([client.wait(each, timeout=30).state for each in ids])
