"""The three sound types and the 8 joint classes built from them.

Joint class index = whistle*1 + beluga_click*2 + porpoise_click*4, so 0 means "none of the three".
Torch-free, so commands that only read manifests (`mgc validate`) start without loading torch; the same conversions
on tensors are in `metrics`.
"""

from __future__ import annotations

SOUND_TYPES: tuple[str, ...] = ("whistle", "beluga_click", "porpoise_click")
NUM_SOUND_TYPES = len(SOUND_TYPES)
NUM_JOINT_CLASSES = 2**NUM_SOUND_TYPES

_BIT_WEIGHTS = tuple(2**i for i in range(NUM_SOUND_TYPES))


def joint_index(labels: tuple[int, ...] | list[int]) -> int:
    """3-bit presence vector -> joint class index 0..7."""
    if len(labels) != NUM_SOUND_TYPES or any(v not in (0, 1) for v in labels):
        raise ValueError(f"expected {NUM_SOUND_TYPES} presence values of 0 or 1 in the order {SOUND_TYPES}, got {labels}")
    return sum(int(v) * w for v, w in zip(labels, _BIT_WEIGHTS))


def label_vector(index: int) -> tuple[int, ...]:
    """Joint class index 0..7 -> 3-bit presence vector."""
    if not 0 <= index < NUM_JOINT_CLASSES:
        raise ValueError(f"joint class index must be in 0..{NUM_JOINT_CLASSES - 1}, got {index}")
    return tuple((index >> i) & 1 for i in range(NUM_SOUND_TYPES))


def joint_class_name(index: int) -> str:
    """Human-readable name, e.g. 'whistle+porpoise_click' or 'none'."""
    present = [name for name, bit in zip(SOUND_TYPES, label_vector(index)) if bit]
    return "+".join(present) if present else "none"


JOINT_CLASS_NAMES: tuple[str, ...] = tuple(joint_class_name(i) for i in range(NUM_JOINT_CLASSES))


def label_map() -> dict:
    """What a checkpoint stores so inference decodes outputs the same way training encoded them."""
    return {"sound_types": list(SOUND_TYPES), "joint_class_names": list(JOINT_CLASS_NAMES)}
