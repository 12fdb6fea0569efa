"""Progress bars: tqdm when wanted, a silent pass-through otherwise."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T] | None, *, total: int | None = None, desc: str = "", enabled: bool = True) -> tqdm:
    """A tqdm bar over ``items`` (``None``: a bar moved by ``update``, for work that is no loop over
    one iterable); ``enabled=False`` keeps the same interface but prints nothing."""
    return tqdm(items, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
