import numpy as np
import pytest

from conftest import write_audio, write_rows
from mgc_lightning.audio.manifest import ManifestError, SplitConfig, load_manifest, split_rows, write_manifest


def test_loads_valid_manifest_with_relative_paths(tiny_dataset):
    rows = load_manifest(tiny_dataset)
    assert len(rows) == 24
    assert rows[0].path == tiny_dataset.parent / "audio" / "rec0.flac"
    assert rows[1].labels == (1, 0, 0) and rows[1].joint_class == 1
    assert rows[5].site == "site1"


def test_every_bad_row_is_reported_with_its_number(tmp_path):
    write_audio(tmp_path / "a.wav", np.zeros(48_000, np.float32), 48_000)
    path = write_rows(tmp_path / "m.csv", [
        ["a.wav", 0, 0.5, 0, 1, 0, "a", "s"],      # row 1: fine
        ["missing.wav", 0, 0.5, 0, 0, 0, "b", "s"],  # row 2: no such file
        ["a.wav", 0, 0.5, "yes", 0, 0, "a", "s"],    # row 3: bad label
        ["a.wav", 0.8, 0.5, 0, 0, 1, "a", "s"],      # row 4: past the end
        ["a.wav", "x", -1, 0, 0, 0, "", "s"],        # row 5: three problems
    ])
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    message = str(caught.value)
    assert "row 1" not in message
    assert "row 2 (line 3)" in message and "missing.wav: file not found" in message
    assert "row 3 (line 4): whistle must be 0 or 1, got 'yes'" in message
    assert "row 4 (line 5): window 0.8-1.3 s runs past the end" in message
    assert "row 5 (line 6): start_s must be a number" in message and "duration_s must be > 0" in message
    assert "row 5 (line 6): empty recording" in message
    assert len(caught.value.problems) == 6


def test_missing_columns_and_extra_fields(tmp_path):
    path = write_rows(tmp_path / "m.csv", [["a.wav", 0, 1]], header=["path", "start_s", "duration_s"])
    with pytest.raises(ManifestError, match=r"lacks required column\(s\) \['whistle'"):
        load_manifest(path)
    path = write_rows(tmp_path / "m2.csv", [["a.wav", 0, 1, 0, 0, 0, "r", "s", "extra"]])
    with pytest.raises(ManifestError, match="row 1 .*more fields than the header"):
        load_manifest(path, check_audio=False)


def test_corrupt_audio_in_a_row_is_named(tmp_path):
    (tmp_path / "bad.flac").write_bytes(b"fLaC not really")
    path = write_rows(tmp_path / "m.csv", [["bad.flac", 0, 1, 0, 0, 0, "r", "s"]])
    with pytest.raises(ManifestError, match=r"row 1 \(line 2\): .*bad.flac: unreadable or corrupt audio"):
        load_manifest(path)


def test_write_then_load_roundtrip(tiny_dataset, tmp_path):
    rows = load_manifest(tiny_dataset)
    out = tiny_dataset.parent / "copy.csv"
    write_manifest(rows, out)
    assert "audio/rec0.flac" in out.read_text()  # relative, so the folder can move
    assert load_manifest(out) == rows


@pytest.mark.parametrize("group_by", ["recording", "site"])
def test_grouped_split_never_puts_a_group_on_two_sides(tiny_dataset, group_by):
    rows = load_manifest(tiny_dataset, check_audio=False)
    fractions = (0.5, 0.0, 0.5) if group_by == "site" else (0.7, 0.15, 0.15)
    splits = split_rows(rows, SplitConfig(group_by=group_by, fractions=fractions, seed=3))
    assert sorted(i for indices in splits.values() for i in indices) == list(range(len(rows)))
    sides = {}
    for side, indices in splits.items():
        for i in indices:
            sides.setdefault(rows[i].group(group_by), set()).add(side)
    assert all(len(s) == 1 for s in sides.values()), sides
    assert all(splits[s] for s, f in zip(("train", "val", "test"), fractions) if f > 0)


def test_split_is_deterministic_per_seed(tiny_dataset):
    rows = load_manifest(tiny_dataset, check_audio=False)
    first = split_rows(rows, SplitConfig(seed=1))
    assert split_rows(rows, SplitConfig(seed=1)) == first
    assert any(split_rows(rows, SplitConfig(seed=s)) != first for s in range(2, 8))


def test_split_refuses_too_few_groups(tiny_dataset):
    rows = load_manifest(tiny_dataset, check_audio=False)
    with pytest.raises(ValueError, match="cannot split 2 site group"):
        split_rows(rows, SplitConfig(group_by="site"))
    with pytest.raises(ValueError, match="group_by must be one of"):
        SplitConfig(group_by="path")


def test_empty_trailing_header_cells_name_no_column(tiny_dataset):
    """Excel writes a header ending in empty cells (`...,site,,`): they are no duplicate columns."""
    lines = tiny_dataset.read_text().splitlines()
    tiny_dataset.write_text("\n".join([lines[0] + ",,"] + [line + ",," for line in lines[1:]]) + "\n")
    assert len(load_manifest(tiny_dataset)) == len(lines) - 1
