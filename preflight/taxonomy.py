"""The operational taxonomy: the classes the deployment cares about, in a fixed id order.

The embedded warehouse world uses these seven classes. ``sku_a`` and ``sku_b`` are the
look-alike pair (they differ only by a small printed mark); ``sku_new`` only appears in
later weeks of the production profile (the drift class) and never in the benchmark
profile, so an off-the-shelf model has no analog for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_CLASSES: tuple[str, ...] = (
    "person",
    "forklift",
    "pallet",
    "box",
    "sku_a",
    "sku_b",
    "sku_new",
)

#: Pairs of classes that differ only by a small detail (used by reports and the decision rule).
LOOKALIKE_PAIRS: tuple[tuple[str, str], ...] = (("sku_a", "sku_b"),)

#: Classes that appear only in later production weeks (drift).
DRIFT_CLASSES: tuple[str, ...] = ("sku_new",)


class TaxonomyError(ValueError):
    """A class name or id that is not part of the operational taxonomy."""


@dataclass(frozen=True)
class Taxonomy:
    """An ordered list of class names; the id of a class is its position."""

    names: tuple[str, ...] = DEFAULT_CLASSES
    lookalike_pairs: tuple[tuple[str, str], ...] = field(default=LOOKALIKE_PAIRS)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise TaxonomyError(f"taxonomy has duplicate class names: {list(self.names)}")
        if not self.names:
            raise TaxonomyError("taxonomy is empty")

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


DEFAULT_TAXONOMY = Taxonomy()
