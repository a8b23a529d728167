"""What every benchmark script shares: interleaved rounds, paired ratios, latency percentiles,
targets that judge themselves, and the header and summary lines of a report.

The scripts run as ``python benchmarks/bench_X.py`` (this directory is then first on
``sys.path``), so they import this module as ``_harness``.

Method, in one place:

- :func:`run_rounds` runs every measurement once per round, *all of them in each round*:
  round r of every measurement before round r + 1 of any. Two measurements that a target
  compares therefore run under the same load, round by round, and odd rounds reverse the
  order, so neither side of a comparison always goes first (A B, B A, A B, ...).
- :func:`ratio` is the median of the per-round ratios ``a[r] / b[r]``; its ``low``/``high``
  are the smallest and largest per-round ratio, printed next to every target that is a ratio.
- :class:`Target` holds a measured value, a comparison and a limit; its verdict is ``PASS``
  when the value meets the limit in this run and ``MISS`` when it does not. Nothing else: a
  MISS is not re-judged, and a target that could not be measured says so.
- :func:`summary_line` is the last line every script prints:
  ``targets: N passed, M missed`` (plus ``, K not measured`` when some were not).
"""

from __future__ import annotations

import math
import operator
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = [
    "COMMAND_ENV",
    "Latencies",
    "LocalRedis",
    "Ratio",
    "Target",
    "command_line",
    "environment",
    "free_port",
    "load_average",
    "percentile",
    "progress",
    "ratio",
    "run_rounds",
    "start_stamp",
    "summary_line",
    "table",
    "targets_table",
    "time_wakeup",
]

K = TypeVar("K", bound=Hashable)

#: Environment variable through which a script that re-executes itself keeps the command line
#: the user typed (see :func:`command_line`).
COMMAND_ENV = "TASKSTORE_BENCH_COMMAND"


# -- rounds ------------------------------------------------------------------------------------


def run_rounds(
    measurements: Mapping[K, Callable[[], float]],
    rounds: int,
    *,
    warmup: int = 1,
    alternate: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[K, list[float]]:
    """Run ``warmup`` + ``rounds`` rounds of every measurement, interleaved; return the timed
    rounds' figures per measurement, in round order.

    Each callable runs *one round* of its measurement and returns that round's figure (seconds
    per operation, requests per second, ...). In every round each measurement runs once, in
    the order of ``measurements`` (reversed in odd rounds when ``alternate``), so keep those
    that a target compares next to each other. The first ``warmup`` rounds are discarded.
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    order = list(measurements)
    samples: dict[K, list[float]] = {key: [] for key in order}
    for index in range(warmup + rounds):
        keys = order[::-1] if alternate and index % 2 else order
        for key in keys:
            figure = measurements[key]()
            if index >= warmup:
                samples[key].append(figure)
        if log is not None:
            timed = index - warmup + 1
            log(f"round {timed}/{rounds} done" if timed > 0 else "warm-up round done")
    return samples


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios, with the per-round ratios themselves."""

    value: float
    rounds: tuple[float, ...]

    @property
    def low(self) -> float:
        return min(self.rounds)

    @property
    def high(self) -> float:
        return max(self.rounds)

    def __str__(self) -> str:
        return f"{self.value:.2f}x"

    @property
    def range(self) -> str:
        """``low–high`` of the per-round ratios, e.g. ``0.91–1.20x (5 rounds)``."""
        return f"{self.low:.2f}–{self.high:.2f}x ({len(self.rounds)} rounds)"


def ratio(a: Sequence[float], b: Sequence[float]) -> Ratio:
    """Median over the rounds of ``a[r] / b[r]`` (both from the same :func:`run_rounds`)."""
    if not a or len(a) != len(b):
        raise ValueError(f"need two equally long, non-empty series, got {len(a)} and {len(b)}")
    per_round = tuple(x / y for x, y in zip(a, b, strict=True))
    return Ratio(statistics.median(per_round), per_round)


# -- latencies ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 100]; ``q = 100`` is the maximum."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Latencies:
    """Latencies of one scenario, in seconds (one per round, or a few per round)."""

    name: str
    samples: tuple[float, ...]
    note: str = ""

    def ms(self, q: float) -> float:
        """The ``q``-th percentile in milliseconds (``q = 100``: the slowest sample)."""
        return percentile(self.samples, q) * 1000

    def row(self) -> list[str]:
        """``name, samples, p50, p90, p100`` (ms) for :func:`table`."""
        cells = [f"{self.ms(q):.1f}" for q in (50, 90, 100)]
        return [self.name, str(len(self.samples)), *cells]

    HEADER = ("scenario", "samples", "p50 ms", "p90 ms", "p100 ms")


def time_wakeup(
    wait: Callable[[], object],
    trigger: Callable[[], object],
    *,
    settle_s: float = 0.05,
    timeout_s: float = 30.0,
) -> tuple[float, object]:
    """Run ``wait()`` on a thread; ``settle_s`` after it starts, call ``trigger()`` here.

    Returns the seconds from just before ``trigger()`` to ``wait()`` returning, and what
    ``wait()`` returned. ``settle_s`` leaves the waiter time to get past its first read into
    the blocking part, so the wake-up is what is timed. An exception in ``wait()`` is
    re-raised here; a ``wait()`` still blocked after ``timeout_s`` raises ``TimeoutError``.
    """
    started = threading.Event()
    outcome: list[tuple[float, object]] = []
    errors: list[BaseException] = []

    def waiter() -> None:
        started.set()
        try:
            value = wait()
        except BaseException as exc:  # re-raised on the calling thread
            errors.append(exc)
        else:
            outcome.append((time.perf_counter(), value))

    thread = threading.Thread(target=waiter, name="bench-waiter", daemon=True)
    thread.start()
    started.wait(timeout_s)
    time.sleep(settle_s)
    triggered = time.perf_counter()
    trigger()
    thread.join(timeout_s)
    if errors:
        raise errors[0]
    if not outcome:
        raise TimeoutError(f"the waiter did not return within {timeout_s} s")
    return outcome[0][0] - triggered, outcome[0][1]


# -- targets -----------------------------------------------------------------------------------

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}
_SYMBOL = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "="}


def _format(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:g}{' ' + unit if unit else ''}"


@dataclass(frozen=True)
class Target:
    """``value op limit``, judged on this run: PASS if it holds, MISS if not.

    ``value`` is a plain number or a :class:`Ratio` (then compared by its median and printed
    with its per-round range); ``None`` means the run could not measure it (``not measured``,
    counted apart: never a pass). ``unit``: ``"x"`` (ratio), ``"ms"``, ``"s"``, ``""`` (a
    count: name the unit in ``name``) or any word, printed after the number.
    """

    name: str
    value: float | Ratio | None
    op: str
    limit: float
    unit: str = "x"
    note: str = field(default="")

    def __post_init__(self) -> None:
        if self.op not in _COMPARE:
            raise ValueError(f"op must be one of {sorted(_COMPARE)}, not {self.op!r}")

    @property
    def measured(self) -> float | None:
        return self.value.value if isinstance(self.value, Ratio) else self.value

    @property
    def passed(self) -> bool | None:
        measured = self.measured
        return None if measured is None else _COMPARE[self.op](measured, self.limit)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "not measured"}[self.passed]

    def row(self) -> list[str]:
        """``target, measured, limit, result, per-round / note`` for :func:`table`."""
        measured = self.measured
        shown = "n/a" if measured is None else _format(measured, self.unit)
        detail = self.value.range if isinstance(self.value, Ratio) else ""
        detail = "; ".join(part for part in (detail, self.note) if part)
        limit = f"{_SYMBOL[self.op]} {_format(self.limit, self.unit)}"
        return [self.name, shown, limit, self.verdict, detail]


def targets_table(targets: Sequence[Target]) -> str:
    """The targets as a Markdown table (with the per-round range of each ratio)."""
    header = ["target", "measured", "limit", "result", "per-round range / note"]
    return table(header, [target.row() for target in targets], left=(0, 4))


def summary_line(targets: Sequence[Target]) -> str:
    """``targets: N passed, M missed`` (``, K not measured`` when some were not)."""
    verdicts = [target.passed for target in targets]
    line = f"targets: {verdicts.count(True)} passed, {verdicts.count(False)} missed"
    if None in verdicts:
        line += f", {verdicts.count(None)} not measured"
    return line


# -- reporting ---------------------------------------------------------------------------------


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Sequence[int] = (0,)
) -> str:
    """A Markdown table aligned for the terminal too (columns in ``left`` left, others right)."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            str(cell).ljust(width) if i in left else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * width if i in left else "-" * (width - 1) + ":" for i, width in enumerate(widths)
    ]
    return "\n".join([line(header), "| " + " | ".join(rule) + " |", *(line(r) for r in rows)])


def command_line() -> str:
    """The command that started this run, as typed (kept across a self re-execution)."""
    return os.environ.get(COMMAND_ENV) or shlex.join(getattr(sys, "orig_argv", sys.argv))


def load_average() -> str:
    """The 1/5/15-minute load averages (other processes on the machine add noise)."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for text in info:
                if text.startswith("model name"):
                    return text.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(*extra: str, started: tuple[float, str] | None = None) -> list[str]:
    """Bullet lines for a report's header: date, command, Python, taskstore, machine, load.

    ``started``: ``(time.time(), load_average())`` taken when the run began, for a header
    printed after the measurements (default: now).
    """
    import taskstore

    when, load = started if started is not None else (time.time(), load_average())
    where = os.path.dirname(os.path.dirname(os.path.abspath(taskstore.__file__)))
    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(when))} (start of the run)",
        f"command: `{command_line()}` (in {os.getcwd()})",
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"taskstore {taskstore.__version__} from {where}",
        *extra,
        f"{platform.system()} {platform.release()} {platform.machine()}, {_cpu()}, "
        f"{os.cpu_count()} logical CPUs",
        f"load average at start: {load}",
    ]


def start_stamp() -> tuple[float, str]:
    """``(time.time(), load_average())`` now: pass to :func:`environment` as ``started``."""
    return time.time(), load_average()


def progress(started: float | None = None) -> Callable[[str], None]:
    """A logger of progress lines on stderr, stamped with the seconds since ``started``."""
    origin = time.perf_counter() if started is None else started

    def log(message: str) -> None:
        print(f"  [{time.perf_counter() - origin:6.1f} s] {message}", file=sys.stderr, flush=True)

    return log


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRedis:
    """``redis-server --port <free> --save '' --appendonly no`` on loopback, in a temporary
    directory; ready (it answered ``PING``) once constructed.

    :raises RuntimeError: it did not answer within 5 s.
    """

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.directory = tempfile.TemporaryDirectory()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory.name],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(500):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError("redis-server did not answer within 5 s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        self.directory.cleanup()
