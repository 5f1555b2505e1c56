"""A recording's per-window table grown batch by batch on disk: what a rerun keeps of the table a killed run left."""

from mgc_lightning.partial_tables import PartialTables

HEADER = b"file,start_s,p_whistle\n"


def _rows(first: int, last: int) -> bytes:
    return b"".join(f"/data/a.wav,{i * 0.25:.6f},0.5\n".encode() for i in range(first, last))


def test_a_rerun_keeps_the_whole_batches_of_complete_rows_and_never_the_last_batch(tmp_path):
    killed = PartialTables(tmp_path, HEADER)
    assert killed.resume("a", "f1", windows=20, batch_size=4) == 0
    for first in range(0, 8, 4):
        killed.append("a", _rows(first, first + 4))
    killed.append("a", _rows(8, 10) + b"/data/a.wav,2.500000,0.4")  # killed inside the third batch's write
    table = tmp_path / "a" / "f1.csv"

    rerun = PartialTables(tmp_path, HEADER)
    assert rerun.resume("a", "f1", windows=20, batch_size=4) == 8
    assert table.read_bytes() == HEADER + _rows(0, 8)  # cut after the last whole batch
    for first in range(8, 20, 4):
        rerun.append("a", _rows(first, first + 4))
    assert rerun.complete("a") == table and table.read_bytes() == HEADER + _rows(0, 20)

    # a table that holds every window (killed before it was moved into place) gives back its last batch, whose
    # arrival completes the file
    assert PartialTables(tmp_path, HEADER).resume("a", "f1", windows=20, batch_size=4) == 16
    assert table.read_bytes() == HEADER + _rows(0, 16)


def test_a_table_of_another_fingerprint_or_with_a_cut_header_starts_again(tmp_path):
    earlier = PartialTables(tmp_path, HEADER)
    earlier.resume("a", "old", windows=20, batch_size=4)
    earlier.append("a", _rows(0, 12))
    earlier.complete("a")
    now = PartialTables(tmp_path, HEADER)
    assert now.resume("a", "new", windows=20, batch_size=4) == 0  # the file or the model changed
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["new.csv"]
    assert (tmp_path / "a" / "new.csv").read_bytes() == HEADER

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.csv").write_bytes(HEADER[:7])  # killed while the header was written
    assert now.resume("b", "f", windows=20, batch_size=4) == 0
    now.append("b", _rows(0, 4))
    assert (tmp_path / "b" / "f.csv").read_bytes() == HEADER + _rows(0, 4)
