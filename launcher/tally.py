"""Requests counted into histogram buckets as they end: what the metrics layer writes at its flush.

``ServerMetrics`` (``launcher.observability.metrics``) writes each worker's counts to ``prometheus_client``'s
multiprocess files a few times a second, not once a request: between two flushes a ``Tally``
holds, per (method label, status), the request count, the duration and size bucket counts
(a value goes to the first bound it does not exceed, as ``Histogram.observe`` puts it) and
their sums. ``take()`` hands them over and starts afresh.

``Tally`` is the C type of ``launcher._speedups`` where it was built: the C access layer counts
each request into it as the request ends, with no Python object made (rows kept for a batched
fold had cost the worker a tuple and a float a request, and a Python fold every 64).
``PyTally`` is the same in Python, used without the extension: it keeps rows and folds them a
batch at a time (sorted values, one bisection a bound), which costs less in Python than
bucketing each request. A unit test holds the two to the same results.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import groupby
from operator import itemgetter
from typing import Any

#: What ``take`` gives for each group: label, status, count, duration buckets (one a bound,
#: then +Inf), duration sum, size buckets, size sum.
Group = tuple[str, Any, int, list[int], float, list[int], int]

#: Rows ``PyTally.add`` keeps before it folds them into its groups.
FOLD = 64

#: A row's group: its method and status.
_GROUP = itemgetter(0, 1)


class PyTally:
    """``Tally`` in Python (see the module docstring)."""

    def __init__(
        self,
        duration_bounds: Sequence[float],
        size_bounds: Sequence[float],
        methods: frozenset[str],
        other: str,
    ) -> None:
        self.duration_bounds = tuple(duration_bounds)
        self.size_bounds = tuple(size_bounds)
        self.methods = methods
        self.other = other
        self._rows: list[tuple[str, Any, int, float]] = []
        self._groups: dict[tuple[str, Any], list[Any]] = {}

    def add(self, method: str, status: Any, size: int, duration: float) -> None:
        """Count one request (folded with the next ``FOLD``, so few rows are held)."""
        self._rows.append((method, status, size, duration))
        if len(self._rows) >= FOLD:
            self._fold()

    def take(self) -> list[Group]:
        """The groups counted since the last ``take``, and forget them."""
        self._fold()
        groups, self._groups = self._groups, {}
        return [(label, status, *values) for (label, status), values in groups.items()]  # type: ignore[misc]

    def _fold(self) -> None:
        """Add the rows to their groups: over the batch, in C where it can be (``groupby``
        after a sort when there is more than one group, and each group's buckets found by
        bisecting its sorted values at each bound), no Python code a request."""
        rows, self._rows = self._rows, []
        if len(set(map(_GROUP, rows))) > 1:  # one group (all GET 200, say) needs no sort
            rows.sort(key=_GROUP)
        for (method, status), group in groupby(rows, _GROUP):
            _, _, sizes, durations = zip(*group, strict=True)
            label = method if method in self.methods else self.other
            values = self._groups.get((label, status))
            if values is None:
                values = self._groups[(label, status)] = [
                    0,
                    [0] * (len(self.duration_bounds) + 1),
                    0.0,
                    [0] * (len(self.size_bounds) + 1),
                    0,
                ]
            values[0] += len(sizes)
            fold(values[1], self.duration_bounds, durations)
            values[2] += math.fsum(durations)
            fold(values[3], self.size_bounds, sizes)
            values[4] += sum(sizes)


def fold(counts: list[int], bounds: tuple[float, ...], values: Iterable[float]) -> None:
    """Add each value to the count of the first bound it does not exceed (the last count: above
    every bound), as ``Histogram.observe`` would (``le`` is inclusive)."""
    ordered = sorted(values)
    below = 0
    for i, bound in enumerate(bounds):
        upto = bisect_right(ordered, bound)
        counts[i] += upto - below
        below = upto
    counts[-1] += len(ordered) - below


Tally: type[PyTally]
try:
    from launcher._speedups import Tally  # type: ignore[no-redef]
except ImportError:  # pragma: no cover - installed without a compiler
    Tally = PyTally
