"""The cost of taskstore's OpenTelemetry instrumentation: ``get`` and a full task lifecycle with
the SDK configured, with the API but no SDK, and with OpenTelemetry not installed, next to the
same operations on taskstore without instrumentation.

For each store URL (``--url``, repeatable; default ``memory://``, the cheapest operations and
so the largest relative cost, and ``sqlite:///{tmp}/bench.db``, a durable store needing no
server; ``{tmp}`` is a fresh directory per worker), four worker processes:

- ``uninstrumented``: taskstore as of ``--baseline`` (a git revision: by default the parent of
  the commit that added ``taskstore/telemetry.py``, or ``HEAD`` while it is uncommitted),
  extracted with ``git archive`` and imported ahead of the installed one; OpenTelemetry
  blocked as below. A revision that cannot open the URL leaves its targets "not measured";
- ``not installed``: this taskstore, with every ``opentelemetry`` module made unimportable by
  a meta path finder (what the ``otel`` extra being absent looks like to the code);
- ``API, no SDK``: this taskstore with ``opentelemetry-api`` importable and no SDK configured
  (the global providers are the API's placeholders);
- ``SDK configured``: this taskstore with the SDK as global providers: a ``TracerProvider``
  exporting through a ``BatchSpanProcessor`` (to an exporter that drops the spans) and a
  ``MeterProvider`` with an ``InMemoryMetricReader`` (recording costs what it costs with any
  reader; nothing is exported during the run).

Operations: ``get`` of one task, and a lifecycle: ``create``, ``get``, ``set_variables``,
``complete``, ``get_result`` (owners cycle over 1 000, so no quota is reached).

Targets (issue "Operating taskstore in production", item 3), per URL, each printed with PASS or
MISS computed from this run: SDK configured within 1.1x of not installed, and not installed
within 1.02x of uninstrumented, for both operations; also API-without-SDK within 1.02x of not
installed (the "no SDK configured" half of "zero cost"). It always exits 0: a benchmark
reports, it does not gate.

Method: the workers start first (each imports its taskstore, opens its store, runs an untimed
warm-up, then ``gc.freeze()``), batch sizes are calibrated on the ``not installed`` worker to
about 0.1 s (0.05 s with ``--quick``), then ``_harness.run_rounds`` runs one warm-up round and
``--rounds`` timed rounds (default 9, 5 with ``--quick``): round r of every measurement before
round r + 1 of any, the order reversed every other round, and the four modes of one operation
next to each other. A measurement's round asks its worker for one batch (``gc.collect()``
first, ``time.perf_counter`` around it) and gets seconds per operation back. Every ratio is the
median of the per-round ratios, printed with their range. ``PYTHONHASHSEED=0`` in every worker.
Workers are separate processes on purpose: an instrumented and an uninstrumented taskstore
cannot share one, and neither can "installed" and "not installed"; so a ratio also carries the
small process-to-process difference in memory layout (see the per-round ranges)::

    .tox/all/bin/python benchmarks/bench_telemetry.py            # ~1 min
    .tox/all/bin/python benchmarks/bench_telemetry.py --quick    # ~30 s
    .tox/all/bin/python benchmarks/bench_telemetry.py --url redis://localhost:6379/0
"""

from __future__ import annotations

import argparse
import io
import os
import shlex
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from _harness import (
    COMMAND_ENV,
    Target,
    environment,
    load_average,
    progress,
    ratio,
    run_rounds,
    summary_line,
    table,
    targets_table,
)

CHECKOUT = Path(__file__).resolve().parent.parent
MODES = ("uninstrumented", "not installed", "API, no SDK", "SDK configured")
OPS = ("get", "lifecycle")
#: The stores measured by default: the cheapest operations (so the largest relative cost of
#: instrumentation), and a durable one that needs no server.
DEFAULT_URLS = ("memory://", "sqlite:///{tmp}/bench.db")
#: Untimed operations (lifecycles) each worker runs before the rounds.
WARMUP = {"get": 2_000, "lifecycle": 200}

# -- the worker ----------------------------------------------------------------------------------

_BLOCK = '''
import importlib.abc, sys

class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
'''

_SDK = '''
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

class _Drop(SpanExporter):
    def export(self, spans):
        return SpanExportResult.SUCCESS

_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))
trace.set_tracer_provider(_tracer_provider)
metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
'''

_LOOP = '''
import gc, sys, time
import taskstore

store = taskstore.open(URL, max_tasks_per_owner=10**9)
one = store.create("reader")
RESULT = {"content": [{"type": "text", "text": "42 documents found"}]}
counter = 0

def get(n):
    task_id = one.task_id
    for _ in range(n):
        store.get(task_id, "reader")

def lifecycle(n):
    global counter
    for _ in range(n):
        counter += 1
        owner = f"owner-{counter % 1000}"
        record = store.create(owner, request={"name": "search", "arguments": {"q": "x"}})
        store.get(record.task_id, owner)
        store.set_variables(record.task_id, owner, {"step": 1})
        store.complete(record.task_id, owner, RESULT)
        store.get_result(record.task_id, owner)

OPS = {"get": get, "lifecycle": lifecycle}
for name, batch in SETUP:
    OPS[name](batch)
gc.collect()
gc.freeze()  # what the set-up imported (OpenTelemetry or not) is not scanned again
print("ready", taskstore.__file__, flush=True)
for line in sys.stdin:
    name, count = line.split()
    gc.collect()
    start = time.perf_counter()
    OPS[name](int(count))
    print((time.perf_counter() - start) / int(count), flush=True)
'''


class Worker:
    """One worker process: a taskstore in one mode, answering batch requests on a pipe."""

    def __init__(self, mode: str, url: str, baseline: Path | None, warmup: dict[str, int]):
        self.mode = mode
        code = []
        if baseline is not None:
            code.append(f"import sys; sys.path.insert(0, {str(baseline)!r})")
        if mode in ("uninstrumented", "not installed"):
            code.append(_BLOCK)
        if mode == "SDK configured":
            code.append(_SDK)
        code.append(f"URL = {url!r}\nSETUP = {sorted(warmup.items())!r}")
        code.append(_LOOP)
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "\n".join(code)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),  # never the checkout: the installed taskstore is meant
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"worker {mode!r} did not start")
        #: Where its taskstore was imported from.
        self.source = ready[1]

    def batch(self, op: str, count: int) -> float:
        """Seconds per operation of one batch of ``count`` ``op``."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{op} {count}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


# -- the baseline --------------------------------------------------------------------------------


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(CHECKOUT), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def default_baseline() -> str:
    """The parent of the commit that added ``taskstore/telemetry.py``, else ``HEAD``."""
    added = _git("log", "--diff-filter=A", "--format=%H", "--", "taskstore/telemetry.py")
    return f"{added.splitlines()[-1]}^" if added else "HEAD"


def extract(revision: str, into: Path) -> Path | None:
    """``taskstore/`` as of ``revision`` under ``into`` (``None`` if it has telemetry too, or
    git cannot say)."""
    try:
        tree = _git("ls-tree", "-r", "--name-only", revision, "taskstore/")
        if "taskstore/telemetry.py" in tree.split():
            return None
        archive = subprocess.run(
            ["git", "-C", str(CHECKOUT), "archive", revision, "taskstore"],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.12, and security releases before it
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - our own repository's archive
            tar.extractall(into)
    return into


# -- the run -------------------------------------------------------------------------------------


class Settings(NamedTuple):
    urls: tuple[str, ...]
    rounds: int
    quick: bool
    baseline: str

    @property
    def batch_s(self) -> float:
        """About how long one batch runs (the op counts are calibrated to it)."""
        return 0.05 if self.quick else 0.1


class Run(NamedTuple):
    """What one store URL gave: seconds per operation by (op, mode), the batch sizes, each
    worker's taskstore source, and why the uninstrumented one did not run (or ``None``)."""

    url: str
    samples: dict[tuple[str, str], list[float]]
    batches: dict[str, int]
    sources: dict[str, str]
    missing: str | None


def _start(settings: Settings, url: str, root: Path) -> tuple[dict[str, Worker], str | None]:
    workers: dict[str, Worker] = {}
    missing: str | None = None
    for mode in MODES:
        baseline = None
        if mode == "uninstrumented":
            baseline = extract(settings.baseline, root / "baseline")
            if baseline is None:
                missing = f"no uninstrumented taskstore at {settings.baseline}"
                continue
        work = root / mode.replace(" ", "-").replace(",", "")
        work.mkdir(parents=True, exist_ok=True)
        try:
            workers[mode] = Worker(mode, url.replace("{tmp}", str(work)), baseline, WARMUP)
        except RuntimeError:
            if mode != "uninstrumented":
                raise
            missing = f"the taskstore at {settings.baseline} cannot open {url}"
    return workers, missing


def measure(settings: Settings, url: str, log: Callable[[str], None]) -> Run:
    """Start the workers on ``url``, calibrate the batches, run the rounds."""
    with tempfile.TemporaryDirectory(prefix="ts-bench-otel-") as tmp:
        workers, missing = _start(settings, url, Path(tmp))
        try:
            # Batches sized on the uninstrumented path, so every mode does the same work.
            probe = workers["not installed"]
            batches = {
                op: max(20, int(settings.batch_s / probe.batch(op, WARMUP[op]))) for op in OPS
            }
            log(f"{url}: batches of " + ", ".join(f"{n} {op}" for op, n in batches.items()))
            measurements = {
                (op, mode): (lambda w=worker, o=op: w.batch(o, batches[o]))
                for op in OPS
                for mode, worker in workers.items()
            }
            samples = run_rounds(measurements, settings.rounds, log=log)
        finally:
            for worker in workers.values():
                worker.close()
    sources = {mode: worker.source for mode, worker in workers.items()}
    return Run(url, samples, batches, sources, missing)


def report(run: Run) -> tuple[str, list[Target]]:
    """The table of costs and the targets of one store URL."""
    rows = []
    for op in OPS:
        for mode in MODES:
            series = run.samples.get((op, mode))
            cells = (
                ["n/a"] * 3
                if series is None
                else [f"{x * 1e6:.2f}" for x in (statistics.median(series), min(series),
                                                  max(series))]
            )
            rows.append([op, mode, *cells])
    text = table(
        ["operation", "taskstore", "median µs", "fastest µs", "slowest µs"], rows, left=(0, 1)
    )
    where = f" ({run.url})"
    targets: list[Target] = []
    for op in OPS:
        sdk, absent = run.samples[(op, "SDK configured")], run.samples[(op, "not installed")]
        targets.append(
            Target(f"{op}: SDK configured / not installed{where}", ratio(sdk, absent), "<=", 1.1)
        )
    for op in OPS:
        base = run.samples.get((op, "uninstrumented"))
        absent = run.samples[(op, "not installed")]
        targets.append(
            Target(
                f"{op}: not installed / uninstrumented{where}",
                None if base is None else ratio(absent, base),
                "<=",
                1.02,
                note="" if base is not None else (run.missing or ""),
            )
        )
    for op in OPS:
        api, absent = run.samples[(op, "API, no SDK")], run.samples[(op, "not installed")]
        targets.append(
            Target(f"{op}: API, no SDK / not installed{where}", ratio(api, absent), "<=", 1.02)
        )
    return text, targets


def _versions() -> list[str]:
    import importlib.metadata

    found = []
    for name in ("opentelemetry-api", "opentelemetry-sdk"):
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; always 0."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter batches, 5 rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds (9; quick 5)")
    parser.add_argument(
        "--url",
        action="append",
        help="a store URL, repeatable; {tmp}: a fresh directory per worker (default: "
        + " and ".join(DEFAULT_URLS) + ")",
    )
    parser.add_argument(
        "--baseline",
        help="git revision of the uninstrumented taskstore (default: the parent of the commit "
        "that added taskstore/telemetry.py, else HEAD)",
    )
    args = parser.parse_args(argv)
    try:
        baseline = args.baseline or default_baseline()
    except (OSError, subprocess.CalledProcessError):
        baseline = "HEAD"
    settings = Settings(
        urls=tuple(args.url or DEFAULT_URLS),
        rounds=max(1, args.rounds or (5 if args.quick else 9)),
        quick=args.quick,
        baseline=baseline,
    )
    started = time.perf_counter()
    stamp = (time.time(), load_average())
    log = progress(started)
    runs = [measure(settings, url, log) for url in settings.urls]

    print(
        "# taskstore benchmark: the cost of OpenTelemetry instrumentation"
        + (" (--quick)" if settings.quick else "")
    )
    print()
    for text in environment(*_versions(), started=stamp):
        print(f"- {text}")
    print(f"- {settings.rounds} rounds; each batch about {settings.batch_s} s; µs per operation")
    print(f"- uninstrumented: taskstore at `{settings.baseline}`")
    for mode, source in runs[0].sources.items():
        print(f"- {mode}: {source}")
    targets: list[Target] = []
    for run in runs:
        text, found = report(run)
        targets += found
        batches = ", ".join(f"{count} {op}" for op, count in run.batches.items())
        print(f"\n## `{run.url}` (batches of {batches})\n")
        print(text)
    print("\n## Targets\n")
    print(targets_table(targets))
    print(f"\n(total {time.perf_counter() - started:.0f} s; load average at end: {load_average()})")
    print()
    print(summary_line(targets))
    return 0


if __name__ == "__main__":
    os.environ.setdefault(COMMAND_ENV, shlex.join(getattr(sys, "orig_argv", sys.argv)))
    sys.exit(main())
