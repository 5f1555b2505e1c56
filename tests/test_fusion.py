"""Mask guidance knows *where*: the frequency band of a mask blob reaches the logits of every fusion, and a small MGC
model learns classes that only the band of the mask tells apart (as the band tells beluga from porpoise clicks)."""

import pytest
import torch
import torch.nn.functional as F

from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.encoders import grid_encoding
from mgc_lightning.models.fusion import FUSIONS

TINY_RESNET = {"channels": [8, 16, 32, 64], "stem_width": 8}
BAND_TOP_ROWS = (24, 40, 56, 72)
"""One mask-token row (16 pixels) apart, and far enough from the mask's edges that no encoder can tell the bands
apart by its zero padding: without positions, these four classes look the same."""


def blob_masks(top_rows: list[int], columns: list[int], size: int = 128) -> torch.Tensor:
    """One 8 x 2 pixel sound per mask, rows top..top + 7 (row 0 is the highest frequency)."""
    masks = torch.zeros(len(top_rows), 1, size, size)
    for mask, top, column in zip(masks, top_rows, columns):
        mask[0, top : top + 8, column : column + 2] = 1
    return masks


def test_positions_are_normalised_so_token_grids_of_any_size_align():
    four_by_four, twelve_by_twelve = grid_encoding((4, 4), 32), grid_encoding((12, 12), 32)
    # cell (1, 2) of 4 x 4 and cell (4, 7) of 12 x 12 share their centre, at 0.375 of the height and 0.625 of the width
    assert torch.allclose(four_by_four.view(4, 4, 32)[1, 2], twelve_by_twelve.view(12, 12, 32)[4, 7], atol=1e-6)
    assert len(twelve_by_twelve.unique(dim=0)) == 144  # no two places alike
    assert not torch.allclose(grid_encoding((2, 1), 32), grid_encoding((1, 2), 32))  # frequency is not time
    with pytest.raises(ValueError, match="dim must be a multiple of 4"):
        grid_encoding((2, 2), 30)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_moving_a_mask_blob_in_frequency_changes_the_logits(fusion):
    torch.manual_seed(0)
    model = ClassifierModule(mask_input="binary", fusion=fusion).eval()
    image = torch.rand(1, 1, 128, 128)
    with torch.no_grad():
        near_110_khz, near_70_khz = (model(image, blob_masks([row], [60])) for row in (40, 72))
        no_sound = model(image, torch.zeros(1, 1, 128, 128))
    moved, added = (near_110_khz - near_70_khz).norm(), (near_110_khz - no_sound).norm()
    # A fresh model's logits are dominated by the residual spectrogram path, so the move is measured against what
    # adding the blob does at all: position-blind fusions move the logits by float noise only (< 1 % of it).
    assert added > 1e-5 * near_110_khz.norm()
    assert moved > 0.1 * added


@pytest.mark.slow
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_mgc_learns_classes_given_only_by_the_mask_band(fusion, one_thread):
    """Every image is the same noise; the class is the band of a mask blob at a random time. 50 steps of 16: every
    fusion scored 0.996-1.000 on the 256 test masks after 40 steps and 1.000 after 60, with seeds 0 and 1 (one torch
    thread), against the bar of 0.95 and chance at 0.25."""
    generator = torch.Generator().manual_seed(0)

    def band_task(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(len(BAND_TOP_ROWS), (count,), generator=generator)
        columns = torch.randint(0, 127, (count,), generator=generator)
        return blob_masks([BAND_TOP_ROWS[label] for label in labels], columns.tolist()), labels

    (train_masks, train_labels), (test_masks, test_labels) = band_task(512), band_task(256)
    image = torch.rand(1, 1, 64, 64, generator=generator)
    torch.manual_seed(0)
    model = ClassifierModule(backbone="resnet18", backbone_kwargs=TINY_RESNET, mask_input="binary", fusion=fusion,
                             dim=64, dropout=0.0, image_size=64)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(50):
        batch = torch.randint(len(train_labels), (16,), generator=generator)
        loss = F.cross_entropy(model(image.expand(16, -1, -1, -1), train_masks[batch]), train_labels[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        predicted = model(image.expand(len(test_labels), -1, -1, -1), test_masks).argmax(dim=-1)
    assert (predicted == test_labels).float().mean() >= 0.95


def test_mask_dropout_hides_the_mask_from_a_share_of_training_windows_only():
    """mask_dropout: in training, the dropped windows' logits do not depend on their mask and the others' do; in
    evaluation every window uses its mask."""
    torch.manual_seed(0)
    model = ClassifierModule(mask_input="binary", fusion="xattn", mask_dropout=0.5, dropout=0.0,
                             backbone_kwargs=TINY_RESNET, dim=32)
    image = torch.rand(64, 1, 128, 128)
    with torch.no_grad():
        model.train()
        logits = []
        for row in (40, 72):
            torch.manual_seed(1)  # the same windows dropped in both passes
            logits.append(model(image, blob_masks([row] * 64, [60] * 64)))
        unchanged = ((logits[0] - logits[1]).abs().amax(dim=1) < 1e-6).float().mean()
        assert 0.3 < unchanged < 0.7  # about half the windows never saw their mask
        model.eval()
        moved = (model(image, blob_masks([40] * 64, [60] * 64)) - model(image, blob_masks([72] * 64, [60] * 64)))
        assert (moved.abs().amax(dim=1) > 1e-6).all()
    with pytest.raises(ValueError, match="mask_dropout"):
        ClassifierModule(mask_input="binary", mask_dropout=1.0)


def test_image_dropout_leaves_a_share_of_training_windows_to_their_mask_alone():
    """image_dropout: in training, the dropped windows' logits do not depend on their image (but still on their
    mask), the others' do; never are both image and mask dropped; in evaluation every window uses its image."""
    torch.manual_seed(0)
    model = ClassifierModule(mask_input="binary", fusion="xattn", image_dropout=0.4, mask_dropout=0.4, dropout=0.0,
                             backbone_kwargs=TINY_RESNET, dim=32)
    images = [torch.rand(64, 1, 128, 128) for _ in range(2)]
    masks = [blob_masks([row] * 64, [60] * 64) for row in (40, 72)]
    with torch.no_grad():
        model.train()

        def logits(image, mask):
            torch.manual_seed(1)  # the same windows dropped in every pass
            return model(image, mask)

        image_blind = (logits(images[0], masks[0]) - logits(images[1], masks[0])).abs().amax(dim=1) < 1e-6
        mask_blind = (logits(images[0], masks[0]) - logits(images[0], masks[1])).abs().amax(dim=1) < 1e-6
        assert 0.2 < image_blind.float().mean() < 0.6 and 0.2 < mask_blind.float().mean() < 0.6
        assert not (image_blind & mask_blind).any()  # every window keeps one of the two
        model.eval()
        assert ((model(images[0], masks[0]) - model(images[1], masks[0])).abs().amax(dim=1) > 1e-6).all()
    with pytest.raises(ValueError, match="sum below 1"):
        ClassifierModule(mask_input="binary", mask_dropout=0.5, image_dropout=0.5)
    with pytest.raises(ValueError, match="a baseline would see nothing"):
        ClassifierModule(mask_input="none", image_dropout=0.3)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_image_head_weight_adds_the_image_paths_own_loss_and_leaves_predictions_to_the_fused_head():
    """image_head_weight: training's loss is the fused head's plus the weighted loss of a head on the spectrogram
    path alone, whose gradient reaches the spectrogram encoder; the model's outputs stay the fused head's."""
    torch.manual_seed(0)
    kwargs = {"mask_input": "binary", "fusion": "xattn", "dropout": 0.0, "backbone_kwargs": TINY_RESNET, "dim": 32}
    model = ClassifierModule(**kwargs, image_head_weight=0.5)
    batch = {"image": torch.rand(8, 1, 128, 128), "mask": blob_masks([40] * 8, [60] * 8),
             "joint": torch.arange(8)}
    model.eval()  # batch norms use their running statistics: every pass below computes the same numbers
    with torch.no_grad():
        fused = F.cross_entropy(model(batch["image"], batch["mask"]), batch["joint"])
        image_features, _ = model._features(batch["image"], batch["mask"])
        image_only = F.cross_entropy(model.image_head(image_features), batch["joint"])
    loss = model.training_step(batch, 0)
    assert torch.isclose(loss, fused + 0.5 * image_only, atol=1e-5)
    loss.backward()
    assert model.image_head[-1].weight.grad.abs().sum() > 0
    plain = ClassifierModule(**kwargs)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("image_head")})
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(plain(batch["image"], batch["mask"]), model(batch["image"], batch["mask"]))
    with pytest.raises(ValueError, match="already sees the image alone"):
        ClassifierModule(mask_input="none", image_head_weight=0.5)


def test_folding_batch_norms_into_convolutions_keeps_the_logits():
    """Detection folds the classifier's batch norms into their convolutions: none is left, and with trained-looking
    running statistics the logits stay the unfolded model's."""
    from mgc_lightning.deploy.inference import fold_batch_norms

    torch.manual_seed(0)
    model = ClassifierModule(mask_input="soft", backbone_kwargs=TINY_RESNET, dim=32).eval()
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
        norm.weight.data.uniform_(0.5, 1.5)
    image, mask = torch.rand(4, 1, 128, 128), torch.rand(4, 1, 128, 128)
    with torch.no_grad():
        before = model(image, mask)
        assert fold_batch_norms(model) > 10
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        assert torch.allclose(model(image, mask), before, rtol=1e-4, atol=1e-5)
