import pytest

from mgc_lightning.core.labels import JOINT_CLASS_NAMES, NUM_JOINT_CLASSES, joint_index, label_map, label_vector


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


@pytest.mark.parametrize("bad", [(0, 1), (0, 2, 1), (1, 1, 1, 0)])
def test_bad_vectors_are_refused(bad):
    with pytest.raises(ValueError):
        joint_index(bad)


def test_bad_index_is_refused():
    with pytest.raises(ValueError):
        label_vector(8)
