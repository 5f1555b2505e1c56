"""Run under torchrun with 2 processes: each rank updates JointAccuracy on its half of a fixed dataset; rank 0 writes
the synced value to the JSON file named on the command line."""

import json
import sys

import torch
import torch.distributed as dist

from mgc_lightning.metrics import JointAccuracy


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(101, 8, generator=generator)
    target = torch.randint(0, 8, (101,), generator=generator)
    metric = JointAccuracy()
    metric.update(logits[rank::world], target[rank::world])  # uneven halves: 51 and 50 windows
    value = float(metric.compute())
    if rank == 0:
        with open(sys.argv[1], "w") as handle:
            json.dump({"synced": value, "world": world, "local_total": int(logits[rank::world].shape[0])}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
