"""Sharing extraction across processes: ``torchrun --nproc_per_node N -m ptssnn features ...``.

Rank r takes utterances ``r, r + N, r + 2N, ...``; every rank writes into the same cache (the
entry locks make that safe) and, at the end, the ranks exchange what they found over a gloo
process group so each returns the full feature set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist


@dataclass
class ProcessGroup:
    """Rank and world size, with a gather that works with one process and without torch.distributed.

    Attributes:
        rank: This process's index.
        world_size: Number of processes.
        owns_group: Whether this object initialised the torch.distributed group (and so
            destroys it in :meth:`close`).
    """

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False

    @classmethod
    def from_environment(cls) -> ProcessGroup:
        """Use the initialised torch.distributed group, else ``RANK``/``WORLD_SIZE`` (torchrun)
        with a new gloo group, else a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), owns_group=False)
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        # gloo: CPU collectives; env:// reads MASTER_ADDR/MASTER_PORT that torchrun sets.
        dist.init_process_group(backend="gloo", init_method="env://")
        return cls(dist.get_rank(), dist.get_world_size(), owns_group=True)

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a one-element list for one process)."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this object created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False
