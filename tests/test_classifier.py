"""The classifier's parts: every named backbone, every fusion and head, mask handling, weights from local files."""

import pytest
import torch

from mgc_lightning.core.errors import InputError
from mgc_lightning.models.classifier import ClassifierModule
from mgc_lightning.models.encoders import MaskEncoder, SpectrogramEncoder
from mgc_lightning.models.fusion import FUSIONS

IMAGE = torch.rand(2, 1, 128, 128)
MASK = (torch.rand(2, 1, 128, 128) > 0.9).float()


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["resnet50", "convnext_tiny", "vit_base_patch16_224",
                                      "deit_base_distilled_patch16_224"])
def test_paper_backbones_build_and_run_on_cpu(backbone):
    model = ClassifierModule(backbone=backbone, mask_input="soft", fusion="xattn").eval()
    with torch.no_grad():
        assert model(IMAGE, MASK).shape == (2, 8)
        tokens, grid = model.spectrogram_encoder(IMAGE)
    side = 8 if backbone.startswith(("vit", "deit")) else 4  # 128 / 16-pixel patches, or 128 / a CNN's stride 32
    assert tokens.shape == (2, side * side, 256) and grid == (side, side)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
@pytest.mark.parametrize("head,outputs", [("multiclass", 8), ("multilabel", 3)])
def test_every_fusion_and_head(fusion, head, outputs):
    model = ClassifierModule(mask_input="binary", fusion=fusion, head=head).eval()
    with torch.no_grad():
        with_mask = model(IMAGE, MASK)
        other_mask = model(IMAGE, torch.zeros_like(MASK))
    assert with_mask.shape == (2, outputs)
    assert not torch.allclose(with_mask, other_mask)  # the mask really reaches the head


def test_baseline_ignores_masks_and_mgc_requires_one():
    baseline = ClassifierModule().eval()
    assert not hasattr(baseline, "mask_encoder")
    with torch.no_grad():
        assert baseline(IMAGE).shape == (2, 8)
    with pytest.raises(ValueError, match="needs a mask"):
        ClassifierModule(mask_input="soft")(IMAGE)
    with pytest.raises(ValueError, match="mask_input must be one of"):
        ClassifierModule(mask_input="gaussian")


def test_mask_tokens_and_spectrogram_tokens_share_the_latent_width_and_know_their_grid():
    mask_tokens, mask_grid = MaskEncoder(64)(MASK)
    assert mask_tokens.shape == (2, 64, 64) and mask_grid == (8, 8)  # 128 / 16 = 8 x 8 tokens
    tokens, grid = SpectrogramEncoder("resnet18", 64, 128)(IMAGE)
    assert tokens.shape == (2, 16, 64) and grid == (4, 4)  # stride 32: 4 x 4


def test_local_pretrained_weights_load_and_missing_ones_say_what_to_do(tmp_path):
    source = SpectrogramEncoder("resnet18", 32, 128)
    weights = tmp_path / "resnet18.pth"
    torch.save(source.backbone.state_dict(), weights)
    loaded = SpectrogramEncoder("resnet18", 32, 128, pretrained_path=str(weights))
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)
    with pytest.raises(FileNotFoundError, match="never downloads weights"):
        SpectrogramEncoder("resnet18", 32, 128, pretrained_path=str(tmp_path / "absent.pth"))


def test_pretrained_without_a_local_file_is_refused_before_any_download(monkeypatch):
    """Even online (no HF_HUB_OFFLINE), `pretrained: true` alone never reaches the hub: it says to give a file."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(InputError, match="never downloads weights.*set pretrained_path to the local file"):
        SpectrogramEncoder("resnet18", 32, 128, pretrained=True)


def test_init_from_copies_weights_only(tmp_path):
    source = ClassifierModule(mask_input="soft")
    path = tmp_path / "source.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    target = ClassifierModule(mask_input="soft", init_from=str(path))
    assert torch.equal(target.head[-1].weight, source.head[-1].weight)
    with pytest.raises(InputError, match="init_from not found"):
        ClassifierModule(init_from=str(tmp_path / "none.ckpt"))
    wider = tmp_path / "wider.ckpt"
    torch.save({"state_dict": ClassifierModule(mask_input="soft", dim=128).state_dict()}, wider)
    with pytest.raises(InputError, match=r"wider.ckpt: \d+ weights of this checkpoint for init_from have other shapes"):
        ClassifierModule(mask_input="soft", init_from=str(wider))


@pytest.mark.slow
def test_compiled_model_computes_what_the_eager_one_does_and_saves_an_eager_checkpoint():
    # aot_eager traces and differentiates the graphs as inductor does, without a minute of C++ compiling on a CPU
    settings = {"backbone": "resnet18", "backbone_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8},
                "mask_input": "soft", "dim": 32, "image_size": 64}
    eager = ClassifierModule(**settings).eval()
    compiled = ClassifierModule(**settings, compile="aot_eager").eval()
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints of either load into the other
    compiled.load_state_dict(eager.state_dict())
    image, mask = torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(compiled(image, mask), eager(image, mask), rtol=1e-4, atol=1e-4)
    checkpoint = {"hyper_parameters": dict(compiled.hparams)}
    compiled.on_save_checkpoint(checkpoint)
    assert checkpoint["hyper_parameters"]["compile"] is False  # evaluating it later does not compile again
