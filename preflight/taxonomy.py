"""The operational taxonomy: the classes the deployment cares about, in a fixed id order.

The class list comes from the settings' ``taxonomy`` key (``preflight init`` proposes it from a
sample's class names); nothing in the library names a class. Look-alike pairs are a settings key
(``decision.lookalike_pairs``) or found from the confusion matrix; classes that no candidate's
``class_map`` covers are "no analog in pre-training".
"""

from __future__ import annotations

from dataclasses import dataclass, field


class TaxonomyError(ValueError):
    """A class name or id that is not part of the operational taxonomy."""


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of class names; the id of a class is its position."""

    names: tuple[str, ...]
    #: pairs of classes that differ only by a small detail (``decision.lookalike_pairs``)
    lookalike_pairs: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise TaxonomyError(f"taxonomy has duplicate class names: {list(self.names)}")
        if not self.names:
            raise TaxonomyError("taxonomy is empty: list your classes under 'taxonomy' in the "
                                "settings (`preflight init --data DIR` proposes them)")
        bad = [n for n in self.names if not isinstance(n, str) or not n.strip()]
        if bad:
            raise TaxonomyError(f"taxonomy class names must be non-empty strings, got {bad}")
        for pair in self.lookalike_pairs:
            unknown = [n for n in pair if n not in self.names]
            if len(pair) != 2 or unknown:
                raise TaxonomyError(f"look-alike pair {list(pair)} must name two taxonomy "
                                    f"classes; not in the taxonomy: {unknown}")

    def __len__(self) -> int:
        return len(self.names)

    def id_of(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise TaxonomyError(f"class {name!r} is not in the taxonomy {list(self.names)}") from None

    def name_of(self, class_id: int) -> str:
        if not 0 <= int(class_id) < len(self.names):
            raise TaxonomyError(
                f"class id {class_id} not in taxonomy (0-{len(self.names) - 1})"
            )
        return self.names[int(class_id)]

    def as_dict(self) -> dict[int, str]:
        return dict(enumerate(self.names))
