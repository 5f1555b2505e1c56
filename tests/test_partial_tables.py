"""A recording's per-window table grown batch by batch on disk: what a rerun keeps of the table a killed run left."""

from mgc_lightning.deploy.partial_tables import PartialTables

HEADER = b"file,start_s,p_whistle\n"


def _rows(first: int, last: int) -> bytes:
    return b"".join(f"/data/a.wav,{i * 0.25:.6f},0.5\n".encode() for i in range(first, last))


def _resume(tables: PartialTables, name: str, fingerprint: str, windows: int = 20, batch_size: int = 4) -> int:
    """As `mgc detect` resumes a file: a decoding process asks what is kept, the writing process opens after it."""
    kept = tables.finished(name, fingerprint, windows, batch_size)
    tables.open(name, fingerprint, kept)
    return kept


def test_a_rerun_keeps_the_whole_batches_of_complete_rows_and_never_the_last_batch(tmp_path):
    killed = PartialTables(tmp_path, HEADER)
    assert _resume(killed, "a", "f1") == 0
    for first in range(0, 8, 4):
        killed.append("a", _rows(first, first + 4))
    killed.append("a", _rows(8, 10) + b"/data/a.wav,2.500000,0.4")  # killed inside the third batch's write
    table = tmp_path / "a" / "f1.csv"

    rerun = PartialTables(tmp_path, HEADER)
    assert rerun.finished("a", "f1", windows=20, batch_size=4) == 8
    assert table.read_bytes() == HEADER + _rows(0, 10) + b"/data/a.wav,2.500000,0.4"  # asking changes nothing
    rerun.open("a", "f1", 8)
    assert table.read_bytes() == HEADER + _rows(0, 8)  # cut after the last whole batch
    for first in range(8, 20, 4):
        rerun.append("a", _rows(first, first + 4))
    assert rerun.complete("a") == table and table.read_bytes() == HEADER + _rows(0, 20)

    # a table that holds every window (killed before it was moved into place) gives back its last batch, whose
    # arrival completes the file
    assert _resume(PartialTables(tmp_path, HEADER), "a", "f1") == 16
    assert table.read_bytes() == HEADER + _rows(0, 16)


def test_a_table_of_another_fingerprint_or_with_a_cut_header_starts_again(tmp_path):
    earlier = PartialTables(tmp_path, HEADER)
    _resume(earlier, "a", "old")
    earlier.append("a", _rows(0, 12))
    earlier.complete("a")
    now = PartialTables(tmp_path, HEADER)
    assert _resume(now, "a", "new") == 0  # the file or the model changed
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["new.csv"]
    assert (tmp_path / "a" / "new.csv").read_bytes() == HEADER

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.csv").write_bytes(HEADER[:7])  # killed while the header was written
    assert _resume(now, "b", "f") == 0
    now.append("b", _rows(0, 4))
    assert (tmp_path / "b" / "f.csv").read_bytes() == HEADER + _rows(0, 4)
