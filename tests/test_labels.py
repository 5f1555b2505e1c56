import pytest
import torch

from mgc_lightning.labels import (
    JOINT_CLASS_NAMES, NUM_JOINT_CLASSES, joint_index, joint_to_vectors, label_map, label_vector, vectors_to_joint,
)


def test_index_follows_bit_weights():
    assert joint_index((0, 0, 0)) == 0
    assert joint_index((1, 0, 0)) == 1
    assert joint_index((0, 1, 0)) == 2
    assert joint_index((0, 0, 1)) == 4
    assert joint_index((1, 1, 1)) == 7


def test_roundtrip_all_classes_and_names():
    assert [joint_index(label_vector(i)) for i in range(NUM_JOINT_CLASSES)] == list(range(8))
    assert JOINT_CLASS_NAMES[0] == "none"
    assert JOINT_CLASS_NAMES[5] == "whistle+porpoise_click"
    assert len(set(JOINT_CLASS_NAMES)) == 8
    assert label_map()["sound_types"] == ["whistle", "beluga_click", "porpoise_click"]


def test_tensor_conversions_both_ways():
    index = torch.arange(8).repeat(3).reshape(3, 8)
    vectors = joint_to_vectors(index)
    assert vectors.shape == (3, 8, 3)
    assert torch.equal(vectors_to_joint(vectors), index)
    assert torch.equal(vectors_to_joint(torch.tensor([[0.9, 0.0, 1.0]])), torch.tensor([5]))


@pytest.mark.parametrize("bad", [(0, 1), (0, 2, 1), (1, 1, 1, 0)])
def test_bad_vectors_are_refused(bad):
    with pytest.raises(ValueError):
        joint_index(bad)


def test_bad_index_is_refused():
    with pytest.raises(ValueError):
        label_vector(8)
