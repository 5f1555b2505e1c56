"""Which share of a dataset-wide job (caching spectrograms, predicting masks, detection) this process does in a DDP
run: every process takes every world-th item of one list that all of them agree on, so each item is done exactly
once, by one process, on any number of devices and nodes, and the files written are those one process writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")


@dataclass(frozen=True)
class Shard:
    """Process `rank` (its global rank, over every node) of `world`; Shard() is a run's only process. Every process
    of the run must make the same calls, in the same order: barriers and gathers wait for all of them."""

    rank: int = 0
    world: int = 1

    @classmethod
    def of_this_process(cls) -> Shard:
        """This process's place in the DDP run that started it (a Lightning Trainer, `start_processes`, torchrun or
        SLURM through them), or the only process when there is none."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def take(self, items: Sequence[Item]) -> list[Item]:
        return list(items[self.rank :: self.world])

    def agreed_share(self, pending: Sequence[Item]) -> list[Item]:
        """This process's share of `pending` (what each process found still to do), after a barrier: no process
        writes before every process has listed, so the lists are equal and the shares cover each item once."""
        self.barrier()
        return self.take(pending)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gathered(self, value: Any) -> list[Any]:
        """`value` of every process, in rank order: also a barrier."""
        if self.world == 1:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values


def start_processes(device: str, devices: int = 1, num_nodes: int = 1) -> tuple[Shard, torch.device]:
    """Join (or start) the `devices` x `num_nodes` processes of a command outside a Trainer, as a Trainer would:
    Lightning runs this command again for each further device of this machine, or torchrun and SLURM start every
    process; MASTER_ADDR, MASTER_PORT and NODE_RANK place a node of any other cluster. Returns this process's shard
    and its device (`device`'s type: cpu, cuda)."""
    if devices * num_nodes == 1:
        return Shard(), torch.device(device)
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=torch.device(device).type, devices=devices, num_nodes=num_nodes, strategy="ddp")
    fabric.launch()
    return Shard.of_this_process(), fabric.device
