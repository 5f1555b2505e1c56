import pytest
import torch
from torchmetrics.classification import (
    MulticlassAccuracy, MultilabelExactMatch, MultilabelF1Score, MultilabelHammingDistance,
)

from mgc_lightning.core.labels import label_vector
from mgc_lightning.models.metrics import (
    EvaluatedWindows, JointAccuracy, joint_confusion, joint_to_vectors, sound_type_scores, to_joint, to_label_vectors,
)


def test_tensor_conversions_both_ways_agree_with_the_labels():
    index = torch.arange(8).repeat(3).reshape(3, 8)
    vectors = joint_to_vectors(index)
    assert vectors.shape == (3, 8, 3)
    assert [tuple(v) for v in vectors[0].tolist()] == [label_vector(i) for i in range(8)]
    assert torch.equal(to_joint(vectors), index)


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


def test_sound_type_scores_agree_with_torchmetrics_and_count_the_confusion():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(120, 8, generator=generator)
    target = torch.randint(0, 8, (120,), generator=generator)
    scores = sound_type_scores(logits, target)
    predicted, truth = joint_to_vectors(logits.argmax(-1)), joint_to_vectors(target)
    assert torch.isclose(scores["joint_acc"], MulticlassAccuracy(8, average="micro")(logits, target))
    assert torch.isclose(scores["macro_f1"], MultilabelF1Score(3, average="macro")(predicted, truth))
    assert torch.isclose(scores["hamming"], MultilabelHammingDistance(3)(predicted, truth))
    per_type = MultilabelF1Score(3, average=None)(predicted, truth)
    assert torch.isclose(scores["f1/porpoise_click"], per_type[2])
    confusion = joint_confusion(logits, target)
    assert confusion.sum() == 120 and confusion.trace() == (logits.argmax(-1) == target).sum()


def test_evaluated_windows_keep_each_index_once_in_index_order():
    """The layout of Lightning's padded distributed sampler on 2 processes: 5 windows, rank 0 gets 0, 2, 4 and
    rank 1 gets 1, 3 and window 0 again."""
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(5, 8, generator=generator)
    target = torch.tensor([0, 3, 5, 7, 2])
    windows = EvaluatedWindows()
    for part in ([0, 2, 4], [1, 3, 0]):
        index = torch.tensor(part)
        windows.update(index, target[index], logits[index], torch.arange(3.0))
    kept = windows.compute()
    assert kept["index"].tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(kept["outputs"], logits) and torch.equal(kept["joint"], target)
    assert kept["loss"].tolist() == [0.0, 0.0, 1.0, 1.0, 2.0]
    assert torch.equal(sound_type_scores(kept["outputs"], kept["joint"])["joint_acc"],
                       sound_type_scores(logits, target)["joint_acc"])
