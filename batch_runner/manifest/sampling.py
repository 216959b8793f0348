"""`sample: N` (and `seed: S`): N combinations of a product, drawn without building it.

A product of axes is indexed in mixed radix (the last axis fastest, as itertools.product), so
combination `i` is found from `i` alone. The draw is the start of a seeded random permutation
of all indexes, made lazily (Fisher-Yates with only the swapped places remembered): the same
seed and product give the same order, so the same N picks the same combinations, and a larger
N keeps every combination a smaller one picked (the first N of the same order). Memory and
time grow with the combinations drawn, not with the product (10^12 is as quick as 10).
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

DEFAULT_SEED = 0
# a draw gives up after this many combinations refused by `exclude` per one kept (with a
# warning): a product almost wholly excluded is not searched to its end
MAX_REFUSED_PER_KEPT = 1000


def permutation(total: int, seed: Any) -> Iterator[int]:
    """Every index of range(total) once, in a seeded random order, made lazily."""
    rng = random.Random(f"batch_runner sample {seed!r}")
    moved: dict[int, int] = {}  # place -> the index now there, for the places swapped
    for i in range(total):
        j = rng.randrange(i, total)
        here = moved.pop(i, i)
        if j == i:
            yield here
            continue
        there = moved.get(j, j)
        moved[j] = here
        yield there


def draw(
    total: int, n: int, seed: Any, keep: Callable[[int], bool] | None = None
) -> tuple[list[int], bool]:
    """The first `n` indexes of the seeded order that `keep` accepts, ascending, and whether
    the draw was complete (False: it gave up, too many were refused)."""
    chosen: list[int] = []
    refused = 0
    for index in permutation(total, seed):
        if len(chosen) >= n:
            break
        if keep is None or keep(index):
            chosen.append(index)
        else:
            refused += 1
            if refused > MAX_REFUSED_PER_KEPT * (len(chosen) + 1):
                return sorted(chosen), False
    return sorted(chosen), True


def unrank(index: int, sizes: Sequence[int]) -> list[int]:
    """The position on each axis of combination `index` (the last axis fastest)."""
    out = [0] * len(sizes)
    for axis in range(len(sizes) - 1, -1, -1):
        index, out[axis] = divmod(index, sizes[axis])
    return out


def sample_problem(value: Any) -> str | None:
    """Why `value` cannot be a sample size, or None when it is a whole number ≥ 1."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return None
    return f"must be a whole number ≥ 1 (how many combinations to keep), not {value!r}"


def seed_problem(value: Any) -> str | None:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return None
    return f"must be a number or a word, not {value!r}"


def draw_across(
    spaces: Sequence[Sequence[int]],
    n: int,
    seed: Any,
    keep: Callable[[int, int], bool] | None = None,
) -> tuple[list[list[int]], bool]:
    """`draw` over several spaces one after the other (the top-level `sample:` over every
    entry): for each space, the values of it drawn, ascending; `keep(space, value)`."""
    starts = list(itertools.accumulate((len(s) for s in spaces), initial=0))

    def locate(index: int) -> tuple[int, int]:
        space = bisect.bisect_right(starts, index) - 1
        return space, spaces[space][index - starts[space]]

    def accept(index: int) -> bool:
        return keep is None or keep(*locate(index))

    chosen, complete = draw(starts[-1], n, seed, accept)
    out: list[list[int]] = [[] for _ in spaces]
    for index in chosen:
        space, value = locate(index)
        out[space].append(value)
    return out, complete
