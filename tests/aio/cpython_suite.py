"""Run CPython's own ``Lib/test/test_asyncio`` modules on another event loop.

    python tests/aio/cpython_suite.py --loop stdlib|fastmux|selector|MODULE:CALLABLE
        [--modules test_events test_streams ...] [--json OUT] [-k PATTERN] [--tracebacks]

Each module runs in a fresh interpreter (the one running this script: the test
modules are those of its own stdlib). Unless the loop is ``stdlib`` (the
reference: nothing is patched), the factory replaces every way the tests get a
loop without naming one:

- the default policy's loop factory (``DefaultEventLoopPolicy._loop_factory``),
  so ``asyncio.new_event_loop()``, ``asyncio.run()`` and ``asyncio.Runner()``
  build the factory's loop; patching the class, not a policy instance, keeps it
  in force when the tests' ``tearDownModule`` resets the policy to None;
- ``asyncio.SelectorEventLoop`` (and 3.13's ``asyncio.EventLoop``), which the
  test classes call directly in ``create_event_loop``/``new_loop``; the
  Select/Poll/EPoll variants all get the factory's loop, since the selector
  they pass is the stdlib loop's concern, not the factory's.

A factory built on ``asyncio.SelectorEventLoop`` itself still gets asyncio's
class while it runs. ``--loop asyncio:SelectorEventLoop`` runs asyncio's own
loop through the swap, which shows that the swap alone breaks nothing.

Per module the result counts tests run, passed, failed, errors, skipped,
expected failures and unexpected successes, and maps each failing test id to a
one-line reason. A test that makes no progress for ``--test-timeout`` seconds,
or that kills its interpreter, is recorded as an error ("hung"/"crashed") and
the module resumes in a fresh interpreter after it.
"""
from __future__ import annotations

import argparse
import faulthandler
import fnmatch
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

# The modules that exercise a loop's public face (absent ones are left out).
MODULES = (
    "test_events",
    "test_streams",
    "test_sock_lowlevel",
    "test_sendfile",
    "test_server",
    "test_buffered_proto",
    "test_protocols",
    "test_tasks",
    "test_taskgroups",
    "test_timeouts",
    "test_runners",
    "test_subprocess",
    "test_ssl",
)

LOOPS = {
    "stdlib": None,
    "fastmux": "fastmux.asyncio:new_event_loop",
    "selector": "fastmux.asyncio:new_selector_event_loop",
}

COUNTS = ("run", "passed", "failed", "errors", "skipped", "expected_failures", "unexpected_successes")

# A test's outcome is the worst of its own and its subtests' (subtests share its id).
_RANK = {"success": 0, "expected_failure": 1, "skip": 2, "unexpected_success": 3, "failure": 4, "error": 5}
_COUNT_OF = {
    "success": "passed",
    "expected_failure": "expected_failures",
    "skip": "skipped",
    "unexpected_success": "unexpected_successes",
    "failure": "failed",
    "error": "errors",
}

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_REASON_MAX = 240


def available_modules() -> List[str]:
    """The modules of :data:`MODULES` that the running Python's test suite has."""
    return [m for m in MODULES if importlib.util.find_spec(f"test.test_asyncio.{m}") is not None]


def resolve_loop(spec: str) -> Optional[str]:
    """``MODULE:CALLABLE`` for a loop name or spec; None for the stdlib loop."""
    if spec in LOOPS:
        return LOOPS[spec]
    if ":" not in spec:
        raise ValueError(f"--loop {spec!r}: expected one of {sorted(LOOPS)} or MODULE:CALLABLE")
    return spec


# --- the worker: one module, in its own interpreter ---------------------------------------


def _load_factory(spec: str) -> Callable[[], Any]:
    module, _, name = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def swap_loop_factory(factory: Callable[[], Any]) -> None:
    """Make every loop the tests build without naming a class come from ``factory``."""
    import asyncio
    from asyncio import unix_events

    stdlib_loop = unix_events.SelectorEventLoop
    building = threading.local()

    class _Swapped(type):
        # isinstance(loop, asyncio.SelectorEventLoop) keeps asking about asyncio's class.
        def __instancecheck__(cls, obj: object) -> bool:
            return isinstance(obj, stdlib_loop)

        def __subclasscheck__(cls, sub: type) -> bool:
            return issubclass(sub, stdlib_loop)

        def __call__(cls, selector: Any = None) -> Any:
            if getattr(building, "active", False):
                return stdlib_loop(selector)  # the factory builds on asyncio's own loop
            if selector is not None:
                selector.close()  # the factory's loop brings its own
            building.active = True
            try:
                return factory()
            finally:
                building.active = False

    class SelectorEventLoop(metaclass=_Swapped):
        """asyncio.SelectorEventLoop, answered by the loop factory under test."""

    for namespace in (asyncio, unix_events):
        namespace.SelectorEventLoop = SelectorEventLoop  # type: ignore[misc]
        if hasattr(namespace, "EventLoop"):  # 3.13+: the platform's default loop class
            namespace.EventLoop = SelectorEventLoop  # type: ignore[attr-defined]
    asyncio.DefaultEventLoopPolicy._loop_factory = SelectorEventLoop  # type: ignore[attr-defined]


def _reason(err: Any) -> str:
    exc_type, exc, _tb = err
    lines = traceback.format_exception_only(exc_type, exc)
    text = " ".join(line.strip() for line in lines[-1].splitlines() if line.strip())
    return text[:_REASON_MAX]


class _StreamingResult(unittest.TestResult):
    """Writes each test's start and outcomes as JSON lines, flushed, so the parent
    knows what ran even if this interpreter hangs or dies."""

    def __init__(self, out: Any, test_timeout: float, tracebacks: bool) -> None:
        super().__init__()
        self._out = out
        self._test_timeout = test_timeout
        self._tracebacks = tracebacks

    def _emit(self, **event: Any) -> None:
        self._out.write(json.dumps(event) + "\n")
        self._out.flush()

    def _outcome(self, test: Any, outcome: str, err: Any = None, reason: str = "") -> None:
        event: Dict[str, Any] = {"event": "outcome", "id": _test_id(test), "outcome": outcome}
        if err is not None:
            reason = _reason(err)
            if self._tracebacks:
                event["traceback"] = "".join(traceback.format_exception(*err))
        if isinstance(test, unittest.case._SubTest):  # type: ignore[attr-defined]
            reason = f"{test._subDescription()}: {reason}"
        if reason:
            event["reason"] = reason[:_REASON_MAX]
        self._emit(**event)

    def startTest(self, test: Any) -> None:
        super().startTest(test)
        self._emit(event="start", id=test.id())
        # Exits with every thread's stack on stderr if this test makes no progress.
        faulthandler.dump_traceback_later(self._test_timeout, exit=True)

    def stopTest(self, test: Any) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._emit(event="stop", id=test.id())
        super().stopTest(test)

    def addSuccess(self, test: Any) -> None:
        self._outcome(test, "success")

    def addFailure(self, test: Any, err: Any) -> None:
        self._outcome(test, "failure", err)

    def addError(self, test: Any, err: Any) -> None:
        self._outcome(test, "error", err)

    def addSkip(self, test: Any, reason: str) -> None:
        self._outcome(test, "skip", reason=reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        self._outcome(test, "expected_failure")

    def addUnexpectedSuccess(self, test: Any) -> None:
        self._outcome(test, "unexpected_success")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            failed = issubclass(err[0], subtest.failureException)
            self._outcome(subtest, "failure" if failed else "error", err)


def _test_id(test: Any) -> str:
    if isinstance(test, unittest.case._SubTest):  # type: ignore[attr-defined]
        return test.test_case.id()
    return test.id()


def iter_tests(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    """The test cases of a suite, flattened."""
    for test in suite:
        if isinstance(test, unittest.TestSuite):
            yield from iter_tests(test)
        else:
            yield test


def _selected(test_id: str, patterns: Sequence[str]) -> bool:
    """unittest's ``-k``: a glob, or a substring when it has no wildcard."""
    return not patterns or any(
        fnmatch.fnmatchcase(test_id, p if any(c in p for c in "*?[") else f"*{p}*") for p in patterns
    )


def _worker(args: argparse.Namespace) -> int:
    faulthandler.enable()  # a crash leaves its stack in the log
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored;
    # the KeyboardInterrupt tests (test_runners) would wait forever for their interrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    spec = resolve_loop(args.loop)
    factory = _load_factory(spec) if spec else None
    module = importlib.import_module(f"test.test_asyncio.{args.worker}")
    if factory is not None:
        swap_loop_factory(factory)
    with open(args.exclude) as f:
        exclude = set(json.load(f))
    loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
    # One flat suite still runs class and module fixtures at each change of class/module.
    suite = unittest.TestSuite(
        t for t in iter_tests(loaded) if t.id() not in exclude and _selected(t.id(), args.k)
    )
    with open(args.progress, "a") as out:
        result = _StreamingResult(out, args.test_timeout, args.tracebacks)
        suite.run(result)
        result._emit(event="done")
    return 0


# --- the parent: one worker per module, resumed after a hang or crash ---------------------


def _worker_command(module: str, args: argparse.Namespace, progress: str, exclude: str) -> List[str]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", module, "--loop", args.loop]
    cmd += ["--progress", progress, "--exclude", exclude, "--test-timeout", str(args.test_timeout)]
    for pattern in args.k:
        cmd += ["-k", pattern]
    if args.tracebacks:
        cmd.append("--tracebacks")
    return cmd


def _hang_site(log: str) -> str:
    """The innermost frame of the first stack faulthandler dumped, if any."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "most recent call first" in line and i + 1 < len(lines):
            return lines[i + 1].strip()
    return ""


class _Outcomes:
    """What the workers of one module reported, across restarts."""

    def __init__(self) -> None:
        self.started: Set[str] = set()
        self.outcomes: Dict[str, str] = {}
        self.reasons: Dict[str, str] = {}
        self.tracebacks: Dict[str, str] = {}

    def record(self, test_id: str, outcome: str, reason: str = "") -> None:
        if _RANK[outcome] >= _RANK[self.outcomes.get(test_id, "success")]:
            self.outcomes[test_id] = outcome
            if reason:
                self.reasons[test_id] = reason

    def read(self, progress: str) -> Tuple[Optional[str], bool]:
        """Take in one worker's events: the test it was in when it stopped, and whether it finished."""
        current = None
        with open(progress) as f:
            for line in f:
                event = json.loads(line)
                kind = event["event"]
                if kind == "start":
                    current = event["id"]
                    self.started.add(current)
                elif kind == "stop":
                    current = None
                elif kind == "outcome":
                    self.record(event["id"], event["outcome"], event.get("reason", ""))
                    if "traceback" in event:
                        self.tracebacks[event["id"]] = event["traceback"]
                elif kind == "done":
                    return None, True
        return current, False

    def report(self) -> Dict[str, Any]:
        counts: Dict[str, Any] = dict.fromkeys(COUNTS, 0)
        counts["run"] = len(self.started)
        for outcome in self.outcomes.values():
            counts[_COUNT_OF[outcome]] += 1
        counts["failing"] = {
            t: self.reasons.get(t, "")
            for t, o in sorted(self.outcomes.items())
            if o in ("failure", "error", "unexpected_success")
        }
        return counts


def run_module(module: str, args: argparse.Namespace) -> Dict[str, Any]:
    """Run one module: its counts, failing tests (id -> one-line reason) and duration."""
    results = _Outcomes()
    began = time.monotonic()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_REPO, os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="cpython_suite-") as tmp:
        progress = os.path.join(tmp, "progress.jsonl")
        exclude = os.path.join(tmp, "exclude.json")
        for _attempt in range(args.max_restarts + 1):
            started_before = len(results.started)
            open(progress, "w").close()
            with open(exclude, "w") as f:
                json.dump(sorted(results.started), f)
            with tempfile.TemporaryFile(mode="w+") as log:
                proc = subprocess.Popen(
                    _worker_command(module, args, progress, exclude),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                )
                rc = _wait(proc, progress, args.test_timeout + 60)
                log.seek(0)
                log_text = log.read()
            current, done = results.read(progress)
            if done:
                break
            if rc is None or "Timeout (" in log_text:  # killed here, or by dump_traceback_later
                what = f"hung: no progress for {args.test_timeout:g} s"
            else:
                what = f"crashed (exit status {rc})"
            site = _hang_site(log_text) or (log_text.strip().splitlines() or [""])[-1]
            if current is not None:
                results.record(current, "error", f"{what}: {site}"[:_REASON_MAX])
            else:
                # Outside a test (import, class or module fixtures): resume only if it got further.
                results.record(f"{module} (worker)", "error", f"{what}: {site}"[:_REASON_MAX])
                if len(results.started) == started_before:
                    break
    report = results.report()
    report["duration_s"] = round(time.monotonic() - began, 1)
    if args.tracebacks:
        report["tracebacks"] = {t: results.tracebacks[t] for t in report["failing"] if t in results.tracebacks}
    return report


def _wait(proc: "subprocess.Popen[bytes]", progress: str, stall_s: float) -> Optional[int]:
    """The worker's exit status, or None after killing it for ``stall_s`` seconds without progress
    (faulthandler normally ends a stuck test first; this catches hangs outside tests)."""
    last_size, last_change = -1, time.monotonic()
    try:
        while True:
            try:
                return proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                size = os.path.getsize(progress)
                if size != last_size:
                    last_size, last_change = size, time.monotonic()
                elif time.monotonic() - last_change > stall_s:
                    return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run_suite(args: argparse.Namespace) -> Dict[str, Any]:
    modules = args.modules or available_modules()
    report: Dict[str, Any] = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "loop": args.loop,
        "factory": resolve_loop(args.loop),
        "modules": {},
    }
    total = dict.fromkeys(COUNTS, 0)
    total_s = 0.0
    for module in modules:
        result = run_module(module, args)
        report["modules"][module] = result
        for key in COUNTS:
            total[key] += result[key]
        total_s += result["duration_s"]
        if not args.quiet:
            print(_row(module, result), flush=True)
            for test_id, reason in result["failing"].items():
                print(f"    {test_id}: {reason}", flush=True)
    report["total"] = dict(total, duration_s=round(total_s, 1))
    if not args.quiet:
        print(_row("total", report["total"]), flush=True)
    return report


def _row(name: str, counts: Dict[str, Any]) -> str:
    cells = " ".join(f"{k}={counts[k]}" for k in COUNTS)
    return f"{name:22} {cells} ({counts['duration_s']} s)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", default="fastmux",
                        help=f"{', '.join(LOOPS)} or MODULE:CALLABLE (default: fastmux)")
    parser.add_argument("--modules", nargs="+", metavar="MODULE",
                        help="test_asyncio modules (default: those of MODULES this Python has)")
    parser.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    parser.add_argument("-k", action="append", default=[], metavar="PATTERN",
                        help="only tests whose id matches (glob, or substring), as unittest -k")
    parser.add_argument("--test-timeout", type=float, default=60.0, metavar="S",
                        help="seconds without progress before a test counts as hung (default 60)")
    parser.add_argument("--max-restarts", type=int, default=20,
                        help="resumes per module after hung or crashed tests (default 20)")
    parser.add_argument("--tracebacks", action="store_true", help="keep full tracebacks in the JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--progress", help=argparse.SUPPRESS)
    parser.add_argument("--exclude", help=argparse.SUPPRESS)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The options of :func:`run_module` and :func:`run_suite`, as on the command line."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        resolve_loop(args.loop)
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return _worker(args)
    report = run_suite(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    total = report["total"]
    return 1 if total["failed"] or total["errors"] or total["unexpected_successes"] else 0


if __name__ == "__main__":
    sys.exit(main())
