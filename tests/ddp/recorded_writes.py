"""`mgc ARGS...` with every cached array's writer recorded: ArrayStore.save writes the array as always, then
appends '<global rank> <file>' to $MGC_WRITES/<process id>.txt, so a test sees which process wrote which file.
Lightning starts each further process of a run by running this script again, so every process records.

usage: recorded_writes.py ARGS...   (the arguments of `mgc`)
"""

import os
import sys
from pathlib import Path

from mgc_lightning.cli import main
from mgc_lightning.core.sharding import Shard
from mgc_lightning.frontend.cache import ArrayStore

save = ArrayStore.save


def save_and_record(store: ArrayStore, key: str, array) -> None:
    save(store, key, array)
    with open(Path(os.environ["MGC_WRITES"]) / f"{os.getpid()}.txt", "a") as record:
        record.write(f"{Shard.of_this_process().rank} {store.path_for(key)}\n")


if __name__ == "__main__":
    ArrayStore.save = save_and_record
    sys.exit(main())
