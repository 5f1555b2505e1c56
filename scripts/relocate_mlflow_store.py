"""Point a copied MLflow SQLite store at its artifacts' new place: the store records absolute artifact paths, so a
`runs/paper/` folder copied back from a GPU machine finds no figures or configs until they are rewritten.

    python scripts/relocate_mlflow_store.py runs/paper/mlflow.db OLD_REPOSITORY [NEW_REPOSITORY]

OLD_REPOSITORY is the repository path on the machine that made the store (gpu_paper.sh writes it in device.txt);
NEW_REPOSITORY defaults to this repository.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"))


def relocate(store: Path, old: str, new: str) -> int:
    """Replace the `old` path prefix by `new` in every artifact location; returns how many rows changed."""
    changed = 0
    with sqlite3.connect(store) as connection:
        for table, column in COLUMNS:
            for prefix in ("file://", ""):
                cursor = connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {column} LIKE ? || '%'",
                    (prefix + new, len(prefix + old) + 1, prefix + old))
                changed += cursor.rowcount
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store", type=Path)
    parser.add_argument("old")
    parser.add_argument("new", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    if not args.store.is_file():
        parser.error(f"{args.store}: no such MLflow store")
    old, new = args.old.rstrip("/"), args.new.rstrip("/")
    print(f"{relocate(args.store, old, new)} artifact locations now under {new}")


if __name__ == "__main__":
    main()
