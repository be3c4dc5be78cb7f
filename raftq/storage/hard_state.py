"""The hard state file: ``RQHS`` then one record holding a ``HardState``, replaced atomically."""

from __future__ import annotations

from raftq import codec, limits
from raftq.errors import CorruptionError, DecodeError
from raftq.raft.types import HardState
from raftq.storage.atomic import replace_file
from raftq.storage.disk import Disk
from raftq.storage.record import ScanEnd, TailKind, frame, scan

MAGIC = b"RQHS"
PATH = "hardstate"


async def load_hard_state(disk: Disk, path: str = PATH) -> HardState:
    """The saved hard state, or the initial one if none was ever saved."""
    if not await disk.exists(path):
        return HardState()
    data = await disk.read(path)
    if len(data) > limits.HARD_STATE_BYTES_MAX or not data.startswith(MAGIC):
        raise CorruptionError("not a raftq hard state file", path=path, offset=0)
    ends: list[ScanEnd] = []
    records = list(scan(data[len(MAGIC) :], ends))
    if ends[0].kind is not TailKind.CLEAN or len(records) != 1:
        raise CorruptionError(
            f"hard state record damaged ({ends[0].reason or 'wrong record count'})",
            path=path,
            offset=len(MAGIC) + ends[0].offset,
        )
    try:
        return codec.decode(records[0][1].tobytes(), HardState)
    except DecodeError as error:
        raise CorruptionError(str(error), path=path, offset=len(MAGIC)) from None


async def save_hard_state(disk: Disk, state: HardState, path: str = PATH) -> None:
    """Durably replace the hard state (two fdatasyncs: the file, then its directory)."""
    await replace_file(disk, path, MAGIC + frame(codec.encode(state, HardState)))
