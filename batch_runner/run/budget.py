"""The `--max-cost` guard (CONTRACT §6): a job goes to the API only while spent + committed +
its own estimate stays within the budget.

`spent` is what finished attempts cost (their estimate when the API gave no cost), plus one
estimate per possible duplicate (a submit whose answer was lost may have created a paid job);
`committed` the estimates of jobs at the API. A job's estimate is reserved before its POST in
one synchronous step (no await between the check and the reservation), so concurrent workers
never overshoot together. A job that does not fit while others are in flight waits for them
(they may cost less than their upper bound); once nothing is in flight it is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from batch_runner.money import usd

EPSILON = 1e-9


@dataclass
class Budget:
    limit: float | None  # None: no budget, every job fits
    spent: float = 0.0
    reserved: dict[int, float] = field(default_factory=dict)  # job index -> its estimate
    _changed: asyncio.Event | None = field(default=None, init=False, repr=False)

    @property
    def committed(self) -> float:
        return usd(sum(self.reserved.values()))

    @property
    def used(self) -> float:
        """What the budget already holds: spent and committed."""
        return usd(self.spent + self.committed)

    def fits(self, price: float | None) -> bool:
        if self.limit is None:
            return True
        if price is None:  # an unknown price can never be shown to fit
            return False
        return self.spent + self.committed + price <= self.limit + EPSILON

    def reserve(self, idx: int, price: float | None) -> bool:
        """Reserve the job's estimate if it fits now (idempotent for a job already reserved)."""
        if idx in self.reserved:
            return True
        if not self.fits(price):
            return False
        self.reserved[idx] = price or 0.0
        return True

    async def wait_reserve(
        self, idx: int, price: float | None, stopping: Callable[[], bool]
    ) -> bool:
        """Reserve, waiting while jobs in flight may still free room; False when it never fits."""
        while not self.reserve(idx, price):
            if not self.reserved or price is None or stopping():
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
        return True

    def settle(self, idx: int, cost: float | None) -> None:
        """The job's attempt finished costing `cost` (None: unknown, its estimate is counted)."""
        price = self.reserved.pop(idx, None)
        charged = cost if cost is not None else price
        self.spent = usd(self.spent + (charged or 0.0))
        self._tell()

    def release(self, idx: int) -> None:
        """The job was not sent after all (refused, or the run stopped): nothing was spent."""
        if self.reserved.pop(idx, None) is not None:
            self._tell()

    def add_spent(self, amount: float | None) -> None:
        self.spent = usd(self.spent + (amount or 0.0))

    def _tell(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None
