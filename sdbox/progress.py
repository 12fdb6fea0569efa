"""Progress of long work: redrawn bars on a terminal, one plain line per stage anywhere else.

On a terminal tqdm redraws its line with carriage returns. Redirected to a file or a pipe the
same bars wrote every frame into it (``sdbox demo > log`` gave a 40-frame line per
distillation), so there each stage prints one line when it ends, with its elapsed time.
:class:`OverallProgress` is the one bar across a whole long command (wrap, distill, benchmark,
attack, demo): an estimate of the time left from the pace so far, and a last line with the
wall time. The stages' own bars, drawn deep inside the library (a wrap's epochs, a distillation's
epochs, a teacher's training), advance it when they end: a command opens it around the library
call, and no library function needs a parameter for it. Redirected, a stage's one line then
carries the command's progress too, so there is still one line per stage.
"""

from __future__ import annotations

import sys
import time
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]
# The command-level bar that stage bars report to: set while an OverallProgress is open.
_overall: ContextVar[OverallProgress | None] = ContextVar("sdbox_overall_progress", default=None)


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
    overall = _overall.get() if enabled else None
    if enabled and not is_terminal(stream):
        return StageLine(items, total=total, desc=desc, stream=stream, overall=overall)
    from tqdm.auto import tqdm

    bar = tqdm(items, total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True, file=stream)
    return bar if overall is None else _ReportingBar(bar, overall, desc)


def _ended_share(n: float, total: float | None) -> float:
    """How much of a stage ran: all of it without a known total, else n/total (a stage cut short by
    an error or Ctrl-C counts for the part it did)."""
    return 1.0 if not total else min(n / total, 1.0)


class _ReportingBar:
    """A stage's tqdm bar on a terminal that advances the enclosing :class:`OverallProgress` when it ends."""

    def __init__(self, bar: Any, overall: OverallProgress, desc: str):
        self.bar, self.overall, self.desc, self.closed = bar, overall, desc, False

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.bar
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.bar.update(n)

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.bar.set_postfix(ordered_dict, **kwargs)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        n, total = self.bar.n, self.bar.total
        self.bar.close()
        self.overall.stage_ended(self.desc, _ended_share(n, total))


class StageLine:
    """A stage's progress where no terminal can redraw a bar: one line when the stage ends,
    ``"wrap epoch 1/5: 40/40 steps in 12.3 s (loss=0.412)"``."""

    def __init__(self, items: Iterable[T] | None, *, total: int | None, desc: str, stream: TextIO, clock: Clock = time.monotonic,
                 overall: OverallProgress | None = None):
        self.items, self.desc, self.stream, self.clock, self.overall = items, desc, stream, clock, overall
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
        command = ""
        if self.overall is not None:
            command = f"; {self.overall.desc}: {self.overall.stage_ended(self.desc, _ended_share(self.n, self.total))}"
        print(f"{self.desc}: {count} steps in {format_duration(self.clock() - self.start)}{figures}{command}", file=self.stream, flush=True)


class OverallProgress:
    """One bar over all of a long command, with the time left, and a final line with the wall time.

    ``total`` is the work in any unit the caller can count ahead (epochs of every stage, students
    to train); ``update(n, stage=...)`` reports work done. While it is open (``with``), every
    stage bar that :func:`progress_bar` draws reports to it when it ends, worth ``weigh(desc)``
    (default 1: one epoch bar, one epoch). On a terminal a tqdm bar (it shows the estimate
    itself) above the stages' own bars; elsewhere a line per named stage::

        sdbox wrap: epoch 2/5 done, 2/5 epochs, 1.2 min elapsed, about 1.8 min left

    or, for a stage bar, the same figures at the end of the stage's own line. ``unit=None``
    shows the share done in percent, for work counted in weights rather than whole things.
    ``started`` (on ``clock``) counts the wall time from the command's start rather than from
    here. Use it as a context manager, so that the final line is printed on success and failure alike.
    """

    def __init__(self, total: float, desc: str, *, unit: str | None = "step", stream: TextIO | None = None, enabled: bool = True,
                 clock: Clock = time.monotonic, weigh: Callable[[str], float] | None = None, started: float | None = None):
        self.total, self.desc, self.unit, self.clock = total, desc, unit, clock
        self.stream = stream if stream is not None else sys.stderr
        self.weigh = weigh or (lambda desc: 1.0)
        self.enabled, self.done = enabled, 0.0
        self.start = started if started is not None else clock()
        self.bar = None
        self.token: Any = None
        if enabled and is_terminal(self.stream):
            from tqdm.auto import tqdm

            share = {} if unit else {"bar_format": "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"}
            self.bar = tqdm(total=total, desc=desc, unit=unit or "", leave=True, dynamic_ncols=True, file=self.stream, **share)

    def eta(self) -> float | None:
        """Seconds left at the pace so far (None before any work is done)."""
        return eta_seconds(self.done, self.total, self.clock() - self.start)

    def status(self) -> str:
        """``2/5 epochs, 1.2 min elapsed, about 1.8 min left`` (``40% done, …`` without a unit)."""
        left = self.eta()
        estimate = f", about {format_duration(left)} left" if left is not None and self.done < self.total else ""
        count = f"{self.done:g}/{self.total:g} {self.unit}s" if self.unit else f"{100 * self.done / self.total:.0f}% done"
        return f"{count}, {format_duration(self.clock() - self.start)} elapsed{estimate}"

    def update(self, n: float = 1, *, stage: str | None = None) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if stage:
                self.bar.set_postfix_str(stage)
        elif self.enabled and stage:
            print(f"{self.desc}: {stage} done, {self.status()}", file=self.stream, flush=True)

    def stage_ended(self, desc: str, share: float = 1.0) -> str:
        """A stage bar ended, having done ``share`` of its work: advance by that much of its
        weight, and return :meth:`status` for the stage's own line."""
        n = self.weigh(desc) * share
        self.done += n
        if self.bar is not None:
            self.bar.update(int(n) if n == int(n) else n)  # whole epochs as "1/2", not tqdm's "1.0/2"
            self.bar.set_postfix_str(desc)
        return self.status()

    def close(self, *, finished: bool = True) -> float:
        """Print the final line with the wall time (``finished=False``: the work stopped early) and
        return the wall time in seconds."""
        wall = self.clock() - self.start
        if self.bar is not None:
            self.bar.close()
        if self.enabled:
            stopped = f"{self.done:g}/{self.total:g} {self.unit}s" if self.unit else f"{100 * self.done / self.total:.0f}%"
            how = "finished" if finished else f"stopped at {stopped}"
            print(f"{self.desc}: {how} in {format_duration(wall)} (wall time)", file=self.stream, flush=True)
        return wall

    def __enter__(self) -> "OverallProgress":
        if self.enabled:
            self.token = _overall.set(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if self.token is not None:
            _overall.reset(self.token)
            self.token = None
        self.close(finished=kind is None)
