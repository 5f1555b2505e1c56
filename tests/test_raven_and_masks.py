import numpy as np
import pytest
from PIL import Image

from conftest import write_audio
from mgc_lightning.audio.manifest import ManifestError, load_manifest
from mgc_lightning.audio.raven import parse_label_mapping, read_boxes, read_selection_table, windows_from_boxes
from mgc_lightning.cli import main
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.ops import box_mask, read_mask_png, soft_mask

TABLE = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\n"
    "1\tSpectrogram 1\t1\t0.20\t0.60\t4000\t12000\tBW\n"
    "2\tSpectrogram 1\t1\t1.10\t1.15\t120000\t145000\tPP\n"
    "3\tSpectrogram 1\t1\t1.40\t1.90\t50\t800\tship\n"
)
MAPPING = "BW=whistle,BC=beluga_click,PP=porpoise_click,ship=ignore"


@pytest.fixture
def raven(tmp_path):
    audio = write_audio(tmp_path / "dep1.flac", np.zeros(2 * 384_000, np.float32), 384_000)
    table = tmp_path / "dep1.Table.1.selections.txt"
    table.write_text(TABLE)
    return audio, table


def test_boxes_become_window_labels(raven):
    audio, table = raven
    boxes = read_selection_table(table, audio, parse_label_mapping(MAPPING))
    assert [b.sound_type for b in boxes] == ["whistle", "porpoise_click"]  # ship ignored on purpose
    rows = windows_from_boxes(audio, boxes, window_s=0.5, hop_s=0.5, site="north")
    assert [r.start_s for r in rows] == [0.0, 0.5, 1.0, 1.5]
    assert [r.labels for r in rows] == [(1, 0, 0), (1, 0, 0), (0, 0, 1), (0, 0, 0)]
    assert all(r.recording == "dep1" and r.site == "north" for r in rows)
    strict = windows_from_boxes(audio, boxes, window_s=0.5, hop_s=0.5, min_overlap_s=0.2)
    assert [r.labels for r in strict] == [(1, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]


def test_unmapped_labels_and_bad_rows_are_reported(raven, tmp_path):
    audio, table = raven
    with pytest.raises(ManifestError, match=r"row 3: label 'ship' is not in the mapping"):
        read_selection_table(table, audio, parse_label_mapping("BW=whistle,PP=porpoise_click"))
    bad = tmp_path / "bad.txt"
    bad.write_text(TABLE.splitlines()[0] + "\n1\tS\t1\t0.5\t0.2\t10\t20\tBW\n")
    with pytest.raises(ManifestError, match="row 1: need 0 <= begin < end"):
        read_selection_table(bad, audio, parse_label_mapping(MAPPING))
    with pytest.raises(ValueError, match="bad label mapping 'BW=whale'"):
        parse_label_mapping("BW=whale")


def test_import_raven_command_writes_manifest_and_boxes(raven, tmp_path):
    audio, table = raven
    out = tmp_path / "manifest.csv"
    args = ["import-raven", str(table), "--audio", str(audio), "--map", MAPPING, "--window", "0.5", "--out", str(out)]
    assert main(args) == 0
    assert main(args[:-2] + ["--out", str(out), "--append", "--recording", "again"]) == 0
    rows = load_manifest(out)  # the same audio imported again replaces its rows: no window twice in a manifest
    assert len(rows) == 4 and {r.recording for r in rows} == {"again"}
    assert len(read_boxes(tmp_path / "manifest_boxes.csv")) == 2


@pytest.mark.parametrize("preset", ["origin", "mel"])
def test_box_mask_lines_up_with_each_presets_grid(raven, preset):
    audio, table = raven
    config = get_preset(preset)
    boxes = read_selection_table(table, audio, parse_label_mapping(MAPPING))
    mask = box_mask(boxes, start_s=1.0, duration_s=0.5, config=config)  # holds only the porpoise box
    rows_hz = config.row_frequencies_hz()
    columns = np.flatnonzero(mask.any(axis=0))
    frequencies = rows_hz[mask.any(axis=1)]
    assert 120_000 - 2_000 < frequencies.min() and frequencies.max() < 145_000 + 2_000
    column_s = 0.5 / config.width
    assert abs(1.0 + columns.min() * column_s - 1.10) <= column_s
    assert abs(1.0 + (columns.max() + 1) * column_s - 1.15) <= column_s
    assert not box_mask(boxes, 1.5, 0.5, config).any()  # the ship box was ignored


def test_soft_mask_against_brute_force_distance():
    rng = np.random.default_rng(5)
    for _ in range(5):
        mask = rng.random((9, 13)) < 0.08
        mask[4, 6] = True
        sigma = rng.uniform(0.5, 4)
        ys, xs = np.nonzero(mask)
        grid_y, grid_x = np.indices(mask.shape)
        distance = np.sqrt((grid_y[..., None] - ys) ** 2 + (grid_x[..., None] - xs) ** 2).min(axis=-1)
        expected = np.exp(-(distance**2) / (2 * sigma**2))
        soft = soft_mask(mask, sigma)
        np.testing.assert_allclose(soft, expected, rtol=1e-6)
        assert (soft[mask] == 1).all() and (soft > 0).all() and (soft <= 1).all()
    assert not soft_mask(np.zeros((4, 4), bool), 2.0).any()
    with pytest.raises(ValueError, match="sigma must be positive"):
        soft_mask(mask, 0)


def test_mask_png_format_is_checked(tmp_path):
    config = get_preset("origin")
    good = np.zeros((config.height, config.width), np.uint8)
    good[10:20, 30:40] = 255
    Image.fromarray(good).save(tmp_path / "good.png")
    assert read_mask_png(tmp_path / "good.png", config).sum() == 100
    Image.fromarray(good[:64]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: mask is 64x128, preset 'origin' images are 128x128"):
        read_mask_png(tmp_path / "small.png", config)
    Image.fromarray(np.stack([good] * 3, -1)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: mask must be a single-channel PNG"):
        read_mask_png(tmp_path / "rgb.png", config)


def two_views(table: str) -> str:
    """The table as Raven writes it with a spectrogram and a waveform view open: every selection twice."""
    header, *rows = table.splitlines()
    doubled = [row for line in rows for row in (line, line.replace("Spectrogram 1", "Waveform 1"))]
    return "\n".join([header, *doubled]) + "\n"


def test_selections_written_once_per_view_are_one_box(raven, tmp_path):
    audio, table = raven
    doubled = tmp_path / "both_views.txt"
    doubled.write_text(two_views(TABLE))
    once = read_selection_table(table, audio, parse_label_mapping(MAPPING))
    assert read_selection_table(doubled, audio, parse_label_mapping(MAPPING)) == once


def test_box_paths_stay_relative_to_the_manifest_from_any_folder(tmp_path, monkeypatch):
    survey = tmp_path / "survey"
    for name in ("a", "b"):
        write_audio(survey / "audio" / f"{name}.flac", np.zeros(768_000, np.float32), 384_000)  # 2 s: every box fits
        (tmp_path / f"{name}.txt").write_text(TABLE)
    monkeypatch.chdir(tmp_path)
    out = "survey/manifest.csv"
    common = ["--map", MAPPING, "--window", "0.5", "--out", out]
    assert main(["import-raven", "a.txt", "--audio", "survey/audio/a.flac", *common]) == 0
    second = tmp_path / "second.txt"
    second.write_text(TABLE.replace("\t1\t1.40", "\t1\t0.70").replace("ship", "BC"))  # a table with 3 boxes
    assert main(["import-raven", "b.txt", "second.txt", "--audio", "survey/audio/b.flac", *common, "--append"]) == 0
    written = (survey / "manifest_boxes.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in written[1:]] == ["audio/a.flac"] * 2 + ["audio/b.flac"] * 5
    monkeypatch.chdir(survey / "audio")  # read from elsewhere: the paths still name the files
    boxes = read_boxes(survey / "manifest_boxes.csv")
    assert {b.path for b in boxes} == {(survey / "audio" / "a.flac").resolve(), (survey / "audio" / "b.flac").resolve()}
    assert len(load_manifest(survey / "manifest.csv")) == 8  # two 2-s recordings of 0.5-s windows


def test_masks_boxes_draws_the_boxes_source_on_any_preset(raven, tmp_path):
    from mgc_lightning.data.datamodules import mask_loader
    from mgc_lightning.frontend.cache import mask_store

    audio, table = raven
    out = tmp_path / "manifest.csv"
    assert main(["import-raven", str(table), "--audio", str(audio), "--map", MAPPING, "--window", "0.5",
                 "--out", str(out)]) == 0
    rows = load_manifest(out)
    for preset in ("origin", "mel"):
        config = get_preset(preset)
        assert main(["masks", "boxes", str(out), "--preset", preset, "--cache-root", str(tmp_path / "cache")]) == 0
        boxes = read_selection_table(table, audio, parse_label_mapping(MAPPING))
        load = mask_loader(config, "boxes", tmp_path / "cache")  # what the data modules read as mask_source boxes
        for row in rows:
            np.testing.assert_array_equal(load(row), box_mask(boxes, row.start_s, row.duration_s, config))
        assert [bool(load(row).any()) for row in rows] == [True, True, True, False]
        assert mask_store(config, "boxes", tmp_path / "cache").has(rows[3].key)
