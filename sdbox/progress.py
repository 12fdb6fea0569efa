"""Progress of long work: redrawn bars on a terminal, one plain line per stage anywhere else.

On a terminal tqdm redraws its line with carriage returns. Redirected to a file or a pipe the
same bars wrote every frame into it (``sdbox demo > log`` gave a 40-frame line per
distillation), so there each stage prints one line when it ends, with its elapsed time.
:class:`OverallProgress` is the one bar across a whole long command (wrap, distill, benchmark,
attack, demo): an estimate of the time left from the pace so far, and a last line with the
wall time.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` can redraw a bar: an interactive terminal, or a Jupyter kernel's output
    (not a tty, but tqdm.auto draws a widget there). A closed or unusual stream cannot."""
    if "ipykernel" in sys.modules and stream in (sys.stdout, sys.stderr):
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def format_duration(seconds: float) -> str:
    """``41 s``, ``2.3 min``, ``1.5 h``: precise enough to plan by, short enough for a log line."""
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def eta_seconds(done: float, total: float, elapsed: float) -> float | None:
    """Seconds left if the rest goes at the pace so far; None before any work is done."""
    if done <= 0 or total <= 0:
        return None
    return max(total - done, 0) * elapsed / done


def progress_bar(items: Iterable[T] | None, *, total: int | None = None, desc: str = "", enabled: bool = True,
                 stream: TextIO | None = None) -> Any:
    """A bar over ``items`` (``None``: one moved by ``update``, for work that is no loop over one
    iterable). On a terminal a tqdm bar; on any other ``stream`` (default stderr) a
    :class:`StageLine`, which prints one line when the stage ends; ``enabled=False`` prints
    nothing. All three iterate and take ``update``, ``set_postfix`` and ``close``."""
    stream = stream if stream is not None else sys.stderr
    if enabled and not is_terminal(stream):
        return StageLine(items, total=total, desc=desc, stream=stream)
    from tqdm.auto import tqdm

    return tqdm(items, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, file=stream)


class StageLine:
    """A stage's progress where no terminal can redraw a bar: one line when the stage ends,
    ``"wrap epoch 1/5: 40/40 steps in 12.3 s (loss=0.412)"``."""

    def __init__(self, items: Iterable[T] | None, *, total: int | None, desc: str, stream: TextIO, clock: Clock = time.monotonic):
        self.items, self.desc, self.stream, self.clock = items, desc, stream, clock
        self.total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)  # type: ignore[arg-type]
        self.n, self.postfix, self.closed = 0, "", False
        self.start = clock()

    def __iter__(self) -> Iterator[T]:
        if self.items is None:
            raise TypeError("This progress line has no items to iterate: call `update(n)` as the work goes.")
        try:
            for item in self.items:
                yield item
                self.n += 1
        finally:  # also when the loop breaks out early: the stage is over either way
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """The figures shown at the end of the line (tqdm's signature)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in {**(ordered_dict or {}), **kwargs}.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        figures = f" ({self.postfix})" if self.postfix else ""
        print(f"{self.desc}: {count} steps in {format_duration(self.clock() - self.start)}{figures}", file=self.stream, flush=True)


class OverallProgress:
    """One bar over all of a long command, with the time left, and a final line with the wall time.

    ``total`` is the work in any unit the caller can count ahead (epochs of every stage, students
    to train); ``update(n, stage=...)`` reports work done. On a terminal a tqdm bar (it shows the
    estimate itself) above the stages' own bars; elsewhere a line per named stage::

        sdbox wrap: epoch 2/5 done, 2/5 epochs, 1.2 min elapsed, about 1.8 min left

    Use it as a context manager, so that the final line is printed on success and failure alike.
    """

    def __init__(self, total: float, desc: str, *, unit: str = "step", stream: TextIO | None = None, enabled: bool = True,
                 clock: Clock = time.monotonic):
        self.total, self.desc, self.unit, self.clock = total, desc, unit, clock
        self.stream = stream if stream is not None else sys.stderr
        self.enabled, self.done, self.start = enabled, 0.0, clock()
        self.bar = None
        if enabled and is_terminal(self.stream):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=True, dynamic_ncols=True, file=self.stream)

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before any work is done)."""
        return eta_seconds(self.done, self.total, self.clock() - self.start)

    def update(self, n: float = 1, *, stage: str | None = None) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if stage:
                self.bar.set_postfix_str(stage)
        elif self.enabled and stage:
            left = self.eta()
            estimate = f", about {format_duration(left)} left" if left is not None and self.done < self.total else ""
            print(f"{self.desc}: {stage} done, {self.done:g}/{self.total:g} {self.unit}s, "
                  f"{format_duration(self.clock() - self.start)} elapsed{estimate}", file=self.stream, flush=True)

    def close(self, *, finished: bool = True) -> float:
        """Print the final line with the wall time (``finished=False``: the work stopped early) and
        return the wall time in seconds."""
        wall = self.clock() - self.start
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            how = "finished" if finished else f"stopped at {self.done:g}/{self.total:g} {self.unit}s"
            print(f"{self.desc}: {how} in {format_duration(wall)} (wall time)", file=self.stream, flush=True)
        return wall

    def __enter__(self) -> "OverallProgress":
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(finished=kind is None)
