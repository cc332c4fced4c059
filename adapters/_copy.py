"""A CPU copy of many tensors that stays near the speed of one flat copy, on a busy machine too.

torch parallelises each ``copy_`` by itself: N tensors, N parallel regions,
each ending at a barrier. When the process has its cores that costs nothing:
copying tensor by tensor runs at the speed of one flat copy of the same bytes.
When another process holds a core, each barrier waits for a descheduled
thread, and the same copy takes 2-3x as long (``docs/torch.md``). Cut into
slices below torch's parallel grain, the copy runs on the calling thread
alone, with no barrier: 1.0-1.5x the flat copy either way. ``AdaptiveCopy``
prepares both, times them, and runs the faster, timing the other again now
and then, since the load on a machine changes: after ``probe`` runs, then
twice as long after each check that confirms the choice (up to 64 runs), and
again after ``probe`` runs once the choice changes. Each way is judged by the
fastest of its last three timings: a preempted run makes a timing longer,
never shorter.
"""

from __future__ import annotations

import time

import torch

GRAIN = 32768  # at::internal::GRAIN_SIZE: a copy of fewer elements runs on the calling thread, unsplit


class AdaptiveCopy:
    """A prepared copy of ``sources`` into ``targets`` (CPU tensors of equal shapes), run with `run`.

    Both ways are views made here, so `run` allocates nothing.

    Args:
        targets: Where to copy.
        sources: What to copy.
        probe: Runs between the first checks of the way not chosen.

    Examples:
        >>> sources = [torch.randn(100_000), torch.randn(3, 4).t()]
        >>> targets = [torch.empty(100_000), torch.empty(4, 3)]
        >>> copy = AdaptiveCopy(targets, sources)
        >>> for _ in range(4):
        ...     copy.run()
        >>> copy.choice in ("per tensor", "sliced"), all(torch.equal(t, s) for t, s in zip(targets, sources))
        (True, True)
    """

    WAYS = ("per tensor", "sliced")

    def __init__(self, targets: list[torch.Tensor], sources: list[torch.Tensor], probe: int = 8) -> None:
        sliced: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for target, source in zip(targets, sources, strict=True):
            count = source.numel()
            if target.stride() == source.stride() and _dense(source):  # the same layout: copy the storage span
                flat = [t.as_strided((count,), (1,), t.storage_offset()) for t in (target, source)]
                for start in range(0, count, GRAIN - 1):
                    sliced[0].append(flat[0][start : start + GRAIN - 1])
                    sliced[1].append(flat[1][start : start + GRAIN - 1])
            else:
                sliced[0].append(target)
                sliced[1].append(source)
        self._ways = ((targets, sources), sliced)
        self._seconds: tuple[list[float], list[float]] = ([], [])  # the last three timings of each way
        self._runs = 0
        self._probe = self._interval = probe
        self._next_probe = 5 + probe

    @property
    def choice(self) -> str:
        """The way runs take now: ``"per tensor"`` (torch's parallel copies) or ``"sliced"`` (one thread)."""
        return self.WAYS[self._best()]

    def run(self) -> None:
        """Copy; the first run is not timed (it touches fresh buffers), the next four time each way twice."""
        self._runs += 1
        runs = self._runs
        best = self._best()
        way = 1 - runs % 2 if runs <= 5 else best ^ (runs == self._next_probe)
        start = time.perf_counter()
        torch._foreach_copy_(*self._ways[way])
        if runs > 1:
            timings = self._seconds[way]
            timings.append(time.perf_counter() - start)
            del timings[:-3]
        if runs == self._next_probe:
            self._interval = min(2 * self._interval, 64) if self._best() == best else self._probe
            self._next_probe = runs + self._interval

    def _best(self) -> int:
        whole, sliced = (min(t, default=0.0) for t in self._seconds)
        return int(sliced < whole)


def _dense(tensor: torch.Tensor) -> bool:
    """Whether the tensor fills a contiguous span of its storage, in some order: its strides are empty_like's."""
    return torch.empty_like(tensor, device="meta").stride() == tensor.stride()
