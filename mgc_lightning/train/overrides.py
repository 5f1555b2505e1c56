"""What one training run changes over its YAML configs: dotted keys (`trainer.max_epochs`) to values. A pipeline YAML
writes them as `mgc fit` options (`[--trainer.max_epochs, 15]`); they are parsed when it loads, so a malformed list
is refused before anything runs and a stage checks keys rather than matching strings, and `mgc fit` gets them back
as the same options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Overrides:
    """Dotted keys to values (strings, as a command line gives them) in the order given; a key given twice keeps its
    last value, in its last place, as jsonargparse applies options in turn."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, options: Sequence[object]) -> "Overrides":
        """`--key value` or `--key=value` items; a ValueError names the first item that is neither."""
        words = [str(word) for word in options]  # YAML reads numbers; a command line gives strings
        overrides = cls()
        index = 0
        while index < len(words):
            key, equals, value = words[index].removeprefix("--").partition("=")
            if not words[index].startswith("--") or not _is_dotted_key(key):
                raise ValueError(f"{words[index]!r} is no --dotted.key option (give --key value pairs)")
            if not equals:
                if index + 1 == len(words) or words[index + 1].startswith("--"):
                    raise ValueError(f"{words[index]} has no value")
                index += 1
                value = words[index]
            overrides = overrides.with_value(key, value)
            index += 1
        return overrides

    def with_value(self, key: str, value: str) -> "Overrides":
        """These overrides with `key` set to `value`, last, as an option appended to a command line would be."""
        return Overrides((*((k, v) for k, v in self.items if k != key), (key, value)))

    def keys(self) -> tuple[str, ...]:
        return tuple(key for key, _ in self.items)

    def arguments(self) -> tuple[str, ...]:
        """The `mgc fit` options that give these values."""
        return tuple(word for key, value in self.items for word in (f"--{key}", value))


def without_init_args(key: str) -> str:
    """A key as jsonargparse also accepts it, without its subclass's `init_args` (`data.split_seed`)."""
    return key.replace(".init_args.", ".")


def _is_dotted_key(key: str) -> bool:
    # a trailing `+` appends to a list (`--trainer.callbacks+=...`)
    return all(part.isidentifier() for part in key.removesuffix("+").split("."))
