"""The segmenter end to end through `mgc fit`: real MLflow (SQLite), checkpoints with metadata, exact resume into
the same run, and resumable dataset-wide prediction; its front-end augmentations and input normalisation."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from mgc_lightning.audio.manifest import SplitConfig, write_manifest
from mgc_lightning.cli import main
from mgc_lightning.data.augment import FrontEndAugment, gain_control_look, resample, rows_misplaced, rows_resampling
from mgc_lightning.data.datamodules import ClassificationDataModule, SegmentationDataModule
from mgc_lightning.frontend.cache import mask_store, spectrogram_store
from mgc_lightning.frontend.spectrogram import PRESETS, get_preset
from mgc_lightning.masks.ops import SOUND_THRESHOLD, binary_mask
from mgc_lightning.masks.predict import predict_masks
from mgc_lightning.masks.sources import PREDICTED_PROBABILITY, select_high_quality
from mgc_lightning.models.segmenter import SegmenterModule, load_segmenter
from conftest import small_benchmark
from mgc_lightning.train.tracking import read_checkpoint_metadata

SEGMENTER_EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "seg_deeplabv3.yaml"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    rows = small_benchmark(root, windows=48, per_recording=8, deployments=3, seed=5)
    write_manifest(select_high_quality(rows, SplitConfig(), count=24), root / "hq.csv")
    return root, rows


def _fit(root, *extra):
    """The paper's experiment YAML with a 32-channel decoder, not 256: tracking, resume and prediction are the point
    here, not the network's size."""
    return main(["fit", "--config", str(SEGMENTER_EXPERIMENT),
                 "--data.init_args.manifest", str(root / "hq.csv"), "--data.init_args.cache_root", str(root / "cache"),
                 "--data.init_args.batch_size", "4", "--trainer.default_root_dir", str(root / "checkpoints"),
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                 "--trainer.enable_progress_bar", "false", "--model.init_args.figure_every_n_epochs", "1",
                 "--model.init_args.network_kwargs", "{decoder_channels: 32}", *extra])


@pytest.fixture(scope="module")
def trained(workspace):
    root, _ = workspace
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.chdir(root)  # artifacts land in root/mlartifacts
        patch.setattr(sys, "argv", ["mgc"])
        # the first fit starts from a local encoder weights file, which is gone before the resume and every load
        # after it: checkpoints hold all their weights
        encoder = root / "encoder.pth"
        torch.save(SegmenterModule(encoder_name="resnet18").net.encoder.state_dict(), encoder)
        assert _fit(root, "--trainer.max_epochs", "1", "--model.init_args.pretrained_path", str(encoder)) == 0
        encoder.unlink()
        last = next((root / "checkpoints").glob("*/*/checkpoints/last.ckpt"))
        first_run = read_checkpoint_metadata(last)["mlflow_run_id"]
        history_before = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_metric_history(first_run, "val/iou")
        assert _fit(root, "--trainer.max_epochs", "2", "--ckpt_path", "last") == 0
    return root, last, first_run, history_before


@pytest.mark.slow
def test_training_is_tracked_in_mlflow_with_config_figures_and_checkpoint_tags(trained):
    root, last, run_id, _ = trained
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.data.params["model/init_args/encoder_name"] == "resnet18"
    assert run.data.params["front_end.n_fft"] == "1024" and run.data.params["front_end.name"] == "origin"
    assert {"val/iou", "val/dice", "val/pixel_f1", "val/loss", "train/loss"} <= set(run.data.metrics)
    artifacts = [a.path for a in client.list_artifacts(run_id)]
    assert "config.yaml" in artifacts
    figures = [a.path for a in client.list_artifacts(run_id, "figures")]
    assert "figures/val_masks_epoch001.png" in figures and "figures/val_masks_epoch002.png" in figures
    assert run.data.tags["checkpoint/last"].endswith("last.ckpt")


@pytest.mark.slow
def test_checkpoint_carries_front_end_and_labels_and_resume_continues_the_same_run(trained):
    root, last, run_id, history_before = trained
    metadata = read_checkpoint_metadata(last)
    assert metadata["spectrogram_config"] == get_preset("origin").to_dict()
    assert metadata["label_map"]["sound_types"] == ["whistle", "beluga_click", "porpoise_click"]
    assert metadata["mlflow_run_id"] == run_id  # the resumed fit wrote into the same run
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert len(client.search_runs([client.get_experiment_by_name("segmentation").experiment_id])) == 1
    history = client.get_metric_history(run_id, "val/iou")
    assert len(history_before) == 1 and len(history) == 2
    assert history[1].step > history[0].step
    state = torch.load(last, weights_only=False)
    assert state["hyper_parameters"]["pretrained_path"] is None  # loads without the (deleted) encoder file
    # two epochs in all, one before the resume and one after: 2 x 2 training steps (Lightning's stored epoch index
    # depends on whether the last save fell before or after the epoch counter moved on)
    assert state["global_step"] == 4


@pytest.mark.slow
def test_prediction_is_resumable_and_tied_to_one_checkpoint(trained, workspace):
    root, last, _, _ = trained
    _, rows = workspace
    config = get_preset("origin")
    cache = root / "cache"
    segmenter = load_segmenter(last)
    assert predict_masks(segmenter, last, rows[:20], config, cache, batch_size=8, progress=False) == 20
    stamps = {p: p.stat().st_mtime_ns for p in mask_store(config, "predicted", cache).folder.glob("*.npy")}
    assert predict_masks(segmenter, last, rows, config, cache, batch_size=8, progress=False) == len(rows) - 20
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # finished windows were not redone
    masks, maps = mask_store(config, "predicted", cache), mask_store(config, PREDICTED_PROBABILITY, cache)
    mask = masks.load(rows[0].key)
    assert mask.shape == (128, 128) and mask.dtype == bool
    # the segmenter's own confidence, kept in the same pass: float16 in [0, 1], whose threshold is the binary mask
    probabilities = np.stack([maps.load(row.key) for row in rows])
    assert probabilities.dtype == np.float16 and probabilities.shape == (len(rows), 128, 128)
    assert probabilities.min() >= 0 and probabilities.max() <= 1
    # a confidence, not a binary mask: the segmenter's own probabilities, drawn again here for the first windows (a
    # count of distinct values would fail whenever a briefly trained segmenter saturates to 1 everywhere)
    images = spectrogram_store(config, cache)
    with torch.no_grad():
        again = segmenter.mask_probabilities(torch.from_numpy(
            np.stack([images.load(row.key) for row in rows[:8]]).astype(np.float32))[:, None]).amax(dim=1)
    assert np.array_equal(probabilities[:8], again.numpy().astype(np.float16))
    for row, probability in zip(rows, probabilities):
        assert np.array_equal(probability > SOUND_THRESHOLD, masks.load(row.key))
    # masks predicted before the maps were kept get theirs, and only they are predicted again
    maps.path_for(rows[1].key).unlink()
    stamps = {p: p.stat().st_mtime_ns for p in maps.folder.glob("*.npy")}
    assert predict_masks(segmenter, last, rows, config, cache, batch_size=8, progress=False) == 1
    assert maps.has(rows[1].key) and all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    model = SegmenterModule.load_from_checkpoint(last).eval()
    image = torch.from_numpy(np.load(next(iter(
        (cache / config.cache_key / "spectrograms").glob("*.npy")))).astype(np.float32))[None, None]
    assert model(image).shape == (1, 2, 128, 128)

    other = root / "other.ckpt"
    other.write_bytes(last.read_bytes())
    with pytest.raises(ValueError, match="holds masks predicted by another checkpoint"):
        predict_masks(load_segmenter(other), other, rows, config, cache, progress=False)
    assert predict_masks(load_segmenter(other), other, rows[:4], config, cache, replace=True,
                         progress=False) == 4
    assert len(masks) == len(maps) == 4  # both sources started over, and both name the new checkpoint
    assert (masks.folder / "source.json").read_text() == (maps.folder / "source.json").read_text()
    assert str(other.resolve()) in (maps.folder / "source.json").read_text()

    module = ClassificationDataModule(str(root / "bench" / "manifest.csv"), cache_root=str(cache),
                                      mask_source="predicted", mask_kind="soft")
    module.setup("fit")
    dataset = next(d for d in module.datasets.values() if rows[0] in d.rows)
    soft = dataset[dataset.rows.index(rows[0])]["mask"][0].numpy()
    predicted = mask_store(config, "predicted", cache).load(rows[0].key)
    assert np.array_equal(soft == 1, predicted)  # the soft mask is 1 exactly on the predicted mask
    module = ClassificationDataModule(str(root / "bench" / "manifest.csv"), cache_root=str(cache),
                                      mask_source="predicted", mask_kind="probability")
    module.setup("fit")
    dataset = next(d for d in module.datasets.values() if rows[0] in d.rows)
    probability = dataset[dataset.rows.index(rows[0])]["mask"][0].numpy()
    assert probability.dtype == np.float32  # a map (the values may all be 0 where a brief training is sure)
    assert np.array_equal(probability, maps.load(rows[0].key).astype(np.float32))  # the stored map, as it is


def test_missing_pretrained_weights_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads weights"):
        SegmenterModule(pretrained_path=str(tmp_path / "resnet18.pth"))


def test_a_mel_axis_warp_moves_image_and_mask_to_where_the_frequency_lies_on_mel_rows():
    origin, mel = get_preset("origin"), get_preset("mel")
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    mask[0, torch.from_numpy(origin.rows_in_band(9_900, 10_100)), 20:60] = True  # a 10 kHz tonal
    image, warped = resample(mask.float(), mask, rows=rows_resampling(origin.row_edges_hz(), mel.row_edges_hz()))
    assert torch.equal(warped, image >= 0.5)  # one resampling for both
    rows = warped[0].any(dim=-1).numpy()
    assert rows[mel.rows_in_band(9_990, 10_010)].all()  # where 10 kHz lies on the mel grid...
    assert np.flatnonzero(rows).mean() < np.flatnonzero(origin.rows_in_band(9_900, 10_100)).mean() - 30  # ...far up
    assert torch.equal(warped[0, :, 20:60].any(dim=0), torch.ones(40, dtype=torch.bool))  # time untouched


def test_front_end_augment_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    origin = get_preset("origin")
    geometry = FrontEndAugment(origin, warp_probability=1, stretch_probability=1, power_probability=0)
    mask = torch.zeros(1, 128, 128, dtype=torch.bool)
    mask[0, 115:117, 10:100] = True  # a whistle
    mask[0, 5:80, 64:66] = True  # a click
    for _ in range(20):
        image, augmented = geometry(mask.float(), mask)  # the image is the mask: both must move the same way
        assert torch.equal(augmented, image >= 0.5)
        assert not torch.equal(augmented, mask)
    intensity = FrontEndAugment(origin, warp_probability=0, stretch_probability=0, power_probability=1)
    image = torch.rand(1, 128, 128)
    looked, same = intensity(image, mask)
    assert same is mask and not torch.equal(looked, image)
    assert torch.equal(looked.flatten().argsort(), image.flatten().argsort())  # a monotone curve: same pixel order


def test_a_warped_axis_moves_a_probability_map_as_the_image_without_binarising_it():
    """A segmenter's probability map is a float mask: every geometric look averages it exactly as it averages the
    image (a pixel's chance of sound over what it covers), where a boolean mask would be thresholded."""
    torch.manual_seed(0)
    geometry = FrontEndAugment(get_preset("origin"), warp_probability=1, stretch_probability=1)
    probability = torch.zeros(1, 128, 128)
    probability[0, 110:118, 10:100] = torch.linspace(0.2, 0.95, 8)[:, None]  # a whistle, surer at its top
    probability[0, 5:80, 64:66] = 0.7  # a click
    for _ in range(20):
        image, moved = geometry(probability.clone(), probability)
        assert moved.dtype == torch.float32 and torch.equal(moved, image)
        assert not torch.equal(moved, probability)
        assert ((moved > 0.05) & (moved < 0.95)).float().mean() > 0.01  # values between 0 and 1 survive
        assert float(moved.min()) >= 0 and float(moved.max()) <= 1


def test_gain_control_look_fades_a_steady_tone_and_keeps_an_onset():
    """PCEN-like looks: a tone present all along sinks towards the noise, a short call of the same level stays on top,
    whatever the drawn parameters; the mask is untouched."""
    torch.manual_seed(0)
    image = 0.2 + 0.03 * torch.rand(1, 128, 128)  # noise at its floor
    image[0, 100, :] = 0.7  # a tone lasting the whole window
    image[0, 30:60, 64] = 0.7  # a click of the same level
    mask = (image > 0.5).float()

    def contrast(shown: torch.Tensor) -> tuple[float, float]:
        noise = shown[0, 64:96, :60].median()
        return float(shown[0, 100, 80:].mean() - noise), float(shown[0, 30:60, 64].mean() - noise)

    tone, click = contrast(image)
    assert tone == pytest.approx(click)
    for time_constant in (8.0, 31.0, 100.0):
        looked = gain_control_look(image, 50.0, time_constant, gain=0.98, bias=2.0, power=0.5)
        assert looked.min() == 0 and looked.max() == 1
        tone, click = contrast(looked)
        assert tone < 0.1 * click, (time_constant, tone, click)
    augment = FrontEndAugment(get_preset("origin"), warp_probability=0, power_probability=0,
                              gain_control_probability=1)
    for _ in range(5):
        looked, same = augment(image, mask)
        tone, click = contrast(looked)
        assert same is mask and tone < 0.5 * click and click > 0.3


def test_front_end_looks_never_come_near_a_tested_front_end():
    """The looks must not reproduce a front end the models are tested on, or that test is no longer out of
    distribution: every other preset lies outside their ranges, at the demo's and the paper's window lengths alike
    (time constants are drawn in seconds)."""
    origin = get_preset("origin")
    tested = [config for config in PRESETS.values() if config.name != origin.name]
    assert {config.name for config in tested} >= {"mel", "pcen"}
    for config, window_s in itertools.product(tested, (0.25, 0.5)):
        looks = FrontEndAugment(origin, warp_probability=1, gain_control_probability=1, window_s=window_s)
        assert looks.settings_near(config) == [], (config.name, window_s)
    # the first looks' ranges held the `pcen` preset's settings, the `mel` axis and both presets' band edges; a
    # power-like curve up to PCEN's exponent, and stretches as wide as `mel`'s longer FFT draws clicks, come near too
    wide = FrontEndAugment(origin, warp_probability=1, gain_control_probability=1, corner_range_hz=(300.0, 1e5),
                           fmin_jitter=2.5, fmax_jitter=1.15, time_constant_bands_s=((4 / 512, 128 / 512),),
                           gain_range=(0.8, 1.0), bias_range=(0.5, 10.0), gain_power_range=(0.25, 0.6))
    assert wide.settings_near(get_preset("pcen")) == ["gain control", "band edges"]
    assert wide.settings_near(get_preset("mel")) == ["frequency axis", "band edges"]
    assert FrontEndAugment(origin, power_probability=1).settings_near(get_preset("pcen")) == ["intensity curve"]
    assert FrontEndAugment(origin, stretch_probability=1).settings_near(get_preset("mel")) == ["time resolution"]
    # the time constant decides what fades: near on its own, whatever gain, bias and power are drawn
    assert FrontEndAugment(origin, gain_control_probability=1, time_constant_bands_s=((0.04, 0.08),)).settings_near(
        get_preset("pcen")) == ["gain control"]
    with pytest.raises(ValueError, match="PCEN-scaled"):  # intensity looks render a dB image
        FrontEndAugment(get_preset("pcen"), gain_control_probability=1)(torch.rand(1, 128, 128), None)
    assert rows_misplaced(get_preset("mel"), 300.0) < 8 < rows_misplaced(get_preset("mel"), 3000.0)  # mel: log-like
    for window_s in (0.25, 0.5):  # drawn in seconds, shown in columns: 128 columns span the window
        torch.manual_seed(0)
        looks = FrontEndAugment(origin, gain_control_probability=1, window_s=window_s)
        drawn = np.array([looks.random_time_constant() for _ in range(2000)]) * window_s / 128
        inside = lambda low, high: (drawn >= low) & (drawn <= high)  # noqa: E731
        assert np.all(inside(4 / 512, 15 / 512) | inside(0.125, 0.5))
        assert 0.2 < inside(4 / 512, 15 / 512).mean() < 0.6  # both bands drawn, by their log widths (1.3 vs 1.4)


@pytest.mark.slow
def test_classifier_training_items_get_looks_and_keep_their_masks_on_the_calls(workspace):
    root, _ = workspace
    settings = dict(cache_root=str(root / "cache"), mask_source="ideal", split_fractions=(0.5, 0.25, 0.25))
    module = ClassificationDataModule(str(root / "hq.csv"), gain_control_probability=1, **settings)
    module.setup("fit")
    images, masks = spectrogram_store(module.config, root / "cache"), mask_store(module.config, "ideal", root / "cache")
    for name, dataset in module.datasets.items():
        row, item = dataset.rows[0], dataset[0]
        stored = torch.from_numpy(images.load(row.key).astype(np.float32))
        assert torch.equal(item["image"][0], stored) == (name != "train"), name
        assert torch.equal(item["mask"][0].bool(), torch.from_numpy(masks.load(row.key)))  # intensity: mask stays
    # tests on another front end rebuild the data module with the training settings: PCEN is fine there
    ClassificationDataModule(str(root / "hq.csv"), preset="pcen", gain_control_probability=1, **settings)
    # a warped axis moves the binary mask with the image, and soft masks are made from the moved one
    warped = ClassificationDataModule(str(root / "hq.csv"), warp_probability=1, mask_kind="soft", **settings)
    warped.setup("fit")
    train = warped.datasets["train"]
    index = next(i for i, row in enumerate(train.rows) if masks.load(row.key).any())
    torch.manual_seed(0)
    item = train[index]
    assert not torch.equal(item["mask"][0] == 1, torch.from_numpy(masks.load(train.rows[index].key)))
    assert float(item["mask"].max()) == 1 and ((item["mask"] > 0) & (item["mask"] < 1)).any()  # soft, not binarised


@pytest.mark.slow
def test_front_end_augment_runs_on_the_training_split_only(workspace):
    root, _ = workspace
    module = SegmentationDataModule(str(root / "hq.csv"), cache_root=str(root / "cache"), mask_source="ideal",
                                    hflip=False, warp_probability=1, stretch_probability=1, power_probability=1,
                                    gain_control_probability=0.5, split_fractions=(0.5, 0.25, 0.25))
    module.setup("fit")
    images, masks = spectrogram_store(module.config, root / "cache"), mask_store(module.config, "ideal", root / "cache")
    for name in ("val", "test"):
        dataset = module.datasets[name]
        assert len(dataset)
        for index, row in enumerate(dataset.rows):
            item = dataset[index]
            assert torch.equal(item["image"][0], torch.from_numpy(images.load(row.key).astype(np.float32)))
            assert torch.equal(item["mask"][0].bool(), torch.from_numpy(masks.load(row.key)))
    train = module.datasets["train"]
    stored = torch.from_numpy(images.load(train.rows[0].key).astype(np.float32))
    assert not torch.equal(train[0]["image"][0], stored)
    assert train.augment.window_s == pytest.approx(train.rows[0].duration_s)  # time constants in seconds


def test_input_normalisation_gives_an_affinely_rescaled_image_the_same_network_input():
    torch.manual_seed(0)
    image = 0.2 + 0.04 * torch.randn(2, 1, 128, 128)
    image[:, :, 40:44, 30:90] += 0.3  # a call
    image[:, :, 100:] += 0.1  # coloured noise: a louder band
    model = SegmenterModule(architecture="Unet").eval()
    paper = SegmenterModule(architecture="Unet", normalize_input=False).eval()
    for scale, offset in ((3.7, -1.2), (0.05, 0.4)):
        rescaled = scale * image + offset
        assert torch.allclose(model.network_input(rescaled), model.network_input(image), atol=1e-4)
        with torch.no_grad():
            assert torch.allclose(model(rescaled), model(image), atol=1e-3)
        assert not torch.allclose(paper.network_input(rescaled), paper.network_input(image), atol=1e-2)


def test_drawn_masks_follow_the_weights_and_match_float32():
    """sound_probability keeps a bfloat16 copy of the network where the hardware has bf16: loading other weights or training
    drops it (a stale copy would draw the old model's masks), and its masks are the float32 network's but for ties."""
    torch.manual_seed(0)
    settings = {"architecture": "Unet", "network_kwargs": {"decoder_channels": [32, 16, 8, 8, 8]}}
    first, second = SegmenterModule(**settings).eval(), SegmenterModule(**settings).eval()
    image = torch.rand(4, 1, 64, 64)
    draw = lambda model: binary_mask(model.sound_probability(image))  # noqa: E731
    assert not torch.equal(draw(first), draw(second))
    first.load_state_dict(second.state_dict())
    assert torch.equal(draw(first), draw(second))
    with torch.no_grad():
        float32 = second(image).argmax(dim=1).bool()
    assert (draw(second) == float32).float().mean() > 0.99
    before = draw(second)
    second.train()
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    second.eval()
    with torch.no_grad():
        float32 = second(image).argmax(dim=1).bool()
    assert not torch.equal(float32, before)  # the new weights draw other masks...
    assert (draw(second) == float32).float().mean() > 0.99  # ... and sound_probability draws them


def test_the_dice_term_scores_overlap_so_a_missed_thin_line_costs_like_a_missed_thick_band():
    """dice_weight adds a soft Dice loss of the sound pixels: missing a 1-pixel click line costs as much as missing a
    16-pixel band (each is the whole overlap), where the cross-entropy charges per pixel, 16 times less for the line."""
    def loss_of_missing(rows: int, dice_weight: float) -> float:
        module = SegmenterModule(architecture="Unet", dice_weight=dice_weight)
        target = torch.zeros(1, 32, 32, dtype=torch.long)
        target[0, 8 : 8 + rows] = 1
        logits = torch.zeros(1, 2, 32, 32)
        logits[:, 0] = 8.0  # confident background everywhere: every sound pixel missed
        return float(module._loss(logits, target))

    cross_entropy = [loss_of_missing(rows, 0.0) for rows in (1, 16)]
    with_dice = [loss_of_missing(rows, 1.0) for rows in (1, 16)]
    dice = [w - c for w, c in zip(with_dice, cross_entropy)]
    assert cross_entropy[1] > 10 * cross_entropy[0]
    assert dice[0] == pytest.approx(dice[1], abs=0.02) and dice[0] > 0.9  # nearly no overlap either way
    with pytest.raises(ValueError, match="dice_weight"):
        SegmenterModule(dice_weight=-1.0)
