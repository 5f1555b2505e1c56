import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy, MultilabelExactMatch, MultilabelF1Score, MultilabelHammingDistance,
)

from mgc_lightning.labels import joint_to_vectors
from mgc_lightning.metrics import JointAccuracy, SoundTypeMetrics, to_label_vectors


def test_joint_accuracy_equals_multilabel_exact_match():
    generator = torch.Generator().manual_seed(1)
    for threshold in (0.3, 0.5, 0.7):
        probabilities = torch.rand(200, 3, generator=generator)
        target = torch.randint(0, 2, (200, 3), generator=generator)
        ours = JointAccuracy(threshold=threshold)(probabilities, target)
        oracle = MultilabelExactMatch(num_labels=3, threshold=threshold)(probabilities, target)
        assert torch.isclose(ours, oracle)


def test_joint_accuracy_equals_micro_multiclass_accuracy():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(300, 8, generator=generator)
    target = torch.randint(0, 8, (300,), generator=generator)
    assert torch.isclose(JointAccuracy()(logits, target), MulticlassAccuracy(8, average="micro")(logits, target))


def test_joint_accuracy_accumulates_over_batches():
    metric = JointAccuracy()
    metric.update(torch.tensor([[0.9, 0.1, 0.8]]), torch.tensor([5]))  # whistle + porpoise: right
    metric.update(torch.tensor([[0.9, 0.6, 0.8], [0.1, 0.2, 0.3]]), torch.tensor([5, 0]))  # wrong, right
    assert float(metric.compute()) == pytest.approx(2 / 3)


def test_label_vectors_from_every_output_form():
    assert torch.equal(to_label_vectors(torch.tensor([6])), torch.tensor([[0, 1, 1]]))
    scores = torch.zeros(1, 8)
    scores[0, 3] = 5
    assert torch.equal(to_label_vectors(scores), torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match=r"expected \(N,\), \(N, 8\) or \(N, 3\)"):
        to_label_vectors(torch.zeros(2, 5))


def test_sound_type_metrics_agree_with_torchmetrics_and_count_the_confusion():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(120, 8, generator=generator)
    target = torch.randint(0, 8, (120,), generator=generator)
    metrics = SoundTypeMetrics()
    metrics.update(logits[:60], target[:60])
    metrics.update(logits[60:], target[60:])
    scores = metrics.compute()
    predicted, truth = joint_to_vectors(logits.argmax(-1)), joint_to_vectors(target)
    assert torch.isclose(scores["macro_f1"], MultilabelF1Score(3, average="macro")(predicted, truth))
    assert torch.isclose(scores["hamming"], MultilabelHammingDistance(3)(predicted, truth))
    per_type = MultilabelF1Score(3, average=None)(predicted, truth)
    assert torch.isclose(scores["f1/porpoise_click"], per_type[2])
    confusion = metrics.confusion_matrix()
    assert confusion.sum() == 120 and confusion.trace() == (logits.argmax(-1) == target).sum()


@pytest.mark.slow
def test_ddp_synced_joint_accuracy_equals_single_process(tmp_path):
    script = Path(__file__).parent / "ddp" / "joint_accuracy_ddp.py"
    out = tmp_path / "ddp.json"
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
                    str(script), str(out)], check=True, capture_output=True, timeout=180)
    result = json.loads(out.read_text())
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(101, 8, generator=generator)
    target = torch.randint(0, 8, (101,), generator=generator)
    single = float(JointAccuracy()(logits, target))
    local = float(JointAccuracy()(logits[0::2], target[0::2]))
    assert result["world"] == 2 and result["local_total"] == 51
    assert result["synced"] == pytest.approx(single)
    assert local != pytest.approx(single)  # so equality above really needed the sync
