import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.data.datamodules import ClassificationDataModule, SegmentationDataModule, labelled_subset
from mgc_lightning.frontend.cache import mask_store, spectrogram_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.sources import PREDICTED_PROBABILITY


def _module(cls, manifest, root, **kwargs):
    module = cls(str(manifest), preset="origin", cache_root=str(root), batch_size=4, split_seed=1, **kwargs)
    module.setup("fit")
    return module


def test_classification_batches_carry_images_and_both_label_forms(tiny_dataset, tmp_path):
    module = _module(ClassificationDataModule, tiny_dataset, tmp_path)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (4, 1, 128, 128) and batch["image"].dtype == torch.float32
    assert batch["labels"].shape == (4, 3)
    weights = torch.tensor([1, 2, 4])
    assert torch.equal((batch["labels"].long() * weights).sum(1), batch["joint"])
    assert "mask" not in batch
    sizes = {name: len(ds) for name, ds in module.datasets.items()}
    assert sum(sizes.values()) == 24 and all(sizes.values())


def test_fewer_labelled_windows_keep_every_class_and_full_length_epochs(tiny_dataset, tmp_path):
    full = _module(ClassificationDataModule, tiny_dataset, tmp_path)
    few = _module(ClassificationDataModule, tiny_dataset, tmp_path, train_windows=8)
    train = full.datasets["train"].rows
    kept = few.datasets["train"].rows
    assert len(kept) == 8 and set(kept) <= set(train)
    assert {row.joint_class for row in kept} == {row.joint_class for row in train}  # stratified: no class lost
    assert few.datasets["val"].rows == full.datasets["val"].rows  # validation and test untouched
    indices = [i for batch in few.train_dataloader() for i in batch["index"].tolist()]
    assert len(indices) == len(train) and set(indices) == set(range(8))  # an epoch as long as the full split's
    # under DDP Lightning puts a DistributedSampler on the loader's dataset: each rank still gets half a full epoch
    ranks = [list(DistributedSampler(few.train_dataloader().dataset, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == -(-len(train) // 2)
    assert set(ranks[0]) | set(ranks[1]) == set(range(len(train)))  # together: a whole full-length epoch
    again = _module(ClassificationDataModule, tiny_dataset, tmp_path, train_windows=8)
    assert again.datasets["train"].rows == kept  # the same windows for every model and seed
    with pytest.raises(ValueError, match="at least 8"):
        ClassificationDataModule(str(tiny_dataset), train_windows=3)
    with pytest.raises(ValueError, match="train_windows=999 but the train split holds"):
        _module(ClassificationDataModule, tiny_dataset, tmp_path, train_windows=999)
    # a model of few labels tested on a whole other manifest (as `mgc evaluate --manifest` rebuilds its data)
    tested = ClassificationDataModule(str(tiny_dataset), preset="origin", cache_root=str(tmp_path), train_windows=8,
                                      split_fractions=(0.0, 0.0, 1.0))
    tested.setup("test")
    assert len(tested.datasets["test"]) == 24


def test_a_labelled_subset_keeps_the_classes_shares():
    rows = [type("Row", (), {"joint_class": c, "key": f"{c}-{i}"})() for c, n in ((0, 601), (1, 299), (2, 97), (3, 3))
            for i in range(n)]
    chosen = labelled_subset(rows, 100, seed=0)
    counts = np.bincount([row.joint_class for row in chosen])
    assert len(chosen) == 100 and len({row.key for row in chosen}) == 100
    assert list(counts) == [61, 29, 9, 1]  # shares rounded down (a rare class keeps one), the rest to the largest
    assert labelled_subset(rows, 100, seed=0) == chosen and labelled_subset(rows, 100, seed=1) != chosen


def test_mask_channel_from_a_named_source_binary_soft_and_probability(tiny_dataset, tmp_path):
    config = get_preset("origin")
    rows = load_manifest(tiny_dataset)
    store = mask_store(config, "ideal", tmp_path)
    for row in rows:
        mask = np.zeros((128, 128), bool)
        mask[60:64, row.joint_class * 10 : row.joint_class * 10 + 5] = True
        store.save(row.key, mask)
    binary = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="ideal")
    soft = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="ideal", mask_kind="soft",
                   soft_sigma=2.0)
    b_item, s_item = binary.datasets["val"][0], soft.datasets["val"][0]
    assert set(b_item["mask"].unique().tolist()) == {0.0, 1.0}
    assert torch.equal(s_item["mask"] == 1, b_item["mask"] == 1)
    assert ((s_item["mask"] > 0) & (s_item["mask"] < 1)).any()
    # an exact mask is certain: read as a probability it is its binary mask, 0 and 1 only
    probability = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="ideal",
                          mask_kind="probability")
    p_item = probability.datasets["val"][0]
    assert p_item["mask"].dtype == torch.float32 and torch.equal(p_item["mask"], b_item["mask"])
    with pytest.raises(ValueError, match=r"mask_kind must be one of \('binary', 'soft', 'probability'\), got 'gauss'"):
        ClassificationDataModule(str(tiny_dataset), mask_source="ideal", mask_kind="gauss")


def test_probability_maps_move_with_the_image_through_every_training_change(tiny_dataset, tmp_path):
    """A segmenter's probability maps reach the classifier as stored, and the training changes (a warped axis, flips,
    time shifts) move them exactly as the image without binarising them: here each window's image is its map."""
    config = get_preset("origin")
    rows = load_manifest(tiny_dataset)
    module = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="predicted",
                     mask_kind="probability", hflip=True, time_shift=0.25, warp_probability=1)
    images, maps = spectrogram_store(config, tmp_path), mask_store(config, PREDICTED_PROBABILITY, tmp_path)
    for row in rows:
        probability = np.zeros((128, 128), np.float16)
        probability[100:116, 10 + row.joint_class * 10 : 40 + row.joint_class * 10] = np.linspace(0.1, 0.9, 16)[:, None]
        maps.save(row.key, probability)
        images.save(row.key, probability)
    val = module.datasets["val"]
    assert torch.equal(val[0]["mask"][0], torch.from_numpy(maps.load(val.rows[0].key).astype(np.float32)))
    torch.manual_seed(0)
    train = module.datasets["train"]
    for index in range(len(train)):
        item = train[index]
        assert item["mask"].dtype == torch.float32 and torch.equal(item["mask"], item["image"])
        assert not torch.equal(item["mask"][0], torch.from_numpy(maps.load(train.rows[index].key).astype(np.float32)))
        assert ((item["mask"] > 0.05) & (item["mask"] < 0.95)).any() and float(item["mask"].max()) <= 1


def test_missing_masks_say_what_to_run(tiny_dataset, tmp_path):
    module = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="predicted")
    with pytest.raises(FileNotFoundError, match="no 'predicted' mask for window .* create the predicted masks"):
        module.datasets["train"][0]
    module = _module(ClassificationDataModule, tiny_dataset, tmp_path, mask_source="predicted",
                     mask_kind="probability")
    with pytest.raises(FileNotFoundError, match="no 'predicted-probability' mask for window .* create the predicted "
                       r"masks for preset 'origin' first \(`mgc masks predict` adds them beside masks predicted before"):
        module.datasets["train"][0]


def test_segmentation_flips_image_and_mask_together(tiny_dataset, tmp_path):
    config = get_preset("origin")
    rows = load_manifest(tiny_dataset)
    store = mask_store(config, "ideal", tmp_path)
    for row in rows[::2]:  # only half the windows have a target mask
        mask = np.zeros((128, 128), bool)
        mask[:, :16] = True  # left edge: a flip moves it to the right edge
        store.save(row.key, mask)
    module = _module(SegmentationDataModule, tiny_dataset, tmp_path, mask_source="ideal", hflip=True)
    assert sum(len(ds) for ds in module.datasets.values()) == 12
    torch.manual_seed(0)
    train = module.datasets["train"]
    flipped = 0
    for draw in range(40):
        index = draw % len(train)
        item, stored = train[index], torch.from_numpy(train.images.load(train.rows[index].key).astype(np.float32))
        on_left = bool(item["mask"][0, :, 0].all())
        flipped += not on_left
        assert bool(item["mask"][0, :, -1].all()) == (not on_left)
        assert torch.equal(item["image"][0], stored if on_left else stored.flip(-1))
    assert 5 < flipped < 35  # about half of the training items are flipped
    assert all(bool(module.datasets["val"][i]["mask"][0, :, 0].all()) for i in range(len(module.datasets["val"])))


def test_every_rank_sees_the_same_split_and_ddp_shards_it_disjointly(tiny_dataset, tmp_path):
    rank0 = _module(ClassificationDataModule, tiny_dataset, tmp_path)
    rank1 = _module(ClassificationDataModule, tiny_dataset, tmp_path)
    assert [r.key for r in rank0.datasets["train"].rows] == [r.key for r in rank1.datasets["train"].rows]
    dataset = rank0.datasets["train"]
    shards = [set(DistributedSampler(dataset, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
    assert shards[0] | shards[1] == set(range(len(dataset)))
    assert len(shards[0] & shards[1]) <= len(dataset) % 2  # only the padding sample may repeat
