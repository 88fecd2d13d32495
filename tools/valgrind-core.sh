#!/usr/bin/env bash
# Run the compiled core's tests under valgrind memcheck, against a debug build.
#
#   tools/valgrind-core.sh                  # tests/core + tests/hardening/test_core_memory.py
#   tools/valgrind-core.sh -k epoll         # extra arguments go to pytest
#   tools/valgrind-core.sh -- tests/core/test_pollers.py   # after --: replaces the default test paths
#
# What it does:
#  1. copies this checkout (tracked and untracked-but-not-ignored files, so no
#     .so, no generated .c) into a temporary directory and builds the core
#     there with FASTMUX_DEBUG=1 (-O0 -g, CYTHON_TRACE_NOGIL, the leak
#     counters of src/fastmux/includes/debug.h).  The checkout's own in-place
#     build is never touched, so nobody else's tests pick up debug modules
#     and there is nothing to restore afterwards;
#  2. runs pytest on those tests in the copy under
#       PYTHONMALLOC=malloc valgrind --tool=memcheck --leak-check=full
#         --errors-for-leak-kinds=definite --suppressions=tools/valgrind-python.supp
#     with FASTMUX_SOAK_SCALE small (the soak loops shrink; the RSS checks
#     skip themselves under valgrind).  A representative subset by default,
#     about 5 minutes on a 2-core box instead of 9-10: the compiled
#     parametrizations only (the pure-Python twins' run no compiled code)
#     and not test_refcounts.py's 200k-cycle RSS loops (see `skip` below);
#     FASTMUX_VALGRIND_FULL=1 runs everything;
#  3. reads valgrind's log and counts the error contexts with a frame in
#     fastmux's compiled code (_pollers_c, _selectors_c, _kernel_floor),
#     including reads of blocks that code allocated or freed.
#
# Exit status: 0 when valgrind found no error in fastmux code and pytest
# passed; 1 when valgrind found an error in fastmux code; 2 when pytest
# crashed or valgrind could not run; 3 when only tests failed (ordinary test
# failures; timing-sensitive tests can fail under valgrind's slowdown; set
# FASTMUX_VALGRIND_ALLOW_TEST_FAILURES=1 to exit 0 for those).
#
# Environment: PYTHON (default python3), FASTMUX_SOAK_SCALE (default 0.005
# here), FASTMUX_VALGRIND_TIMEOUT (seconds, default 1800),
# FASTMUX_VALGRIND_OUT (where the logs are kept, default build/valgrind-core,
# which .gitignore covers), FASTMUX_VALGRIND_KEEP=1 keeps the temporary copy.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# The interpreter binary itself: valgrind must not trace a pyenv shim script.
py=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
out=${FASTMUX_VALGRIND_OUT:-$repo/build/valgrind-core}
limit=${FASTMUX_VALGRIND_TIMEOUT:-1800}
supp="$repo/tools/valgrind-python.supp"

command -v valgrind >/dev/null || { echo "valgrind-core: valgrind is not installed" >&2; exit 2; }

extra=()
tests=(tests/core tests/hardening/test_core_memory.py)
# Left out by default (FASTMUX_VALGRIND_FULL=1 keeps them): the long
# RSS/VmData loops of tests/core/test_refcounts.py (100k-200k cycles each,
# about 5 of the 9-10 minutes under valgrind, and their memory limits do not
# hold there: valgrind keeps freed blocks in a 20 MB quarantine, so RSS and
# VmData grow by design).  The same loops run at valgrind size in
# tests/hardening/test_core_memory.py, whose RSS checks skip themselves
# under valgrind (LD_PRELOAD names vgpreload).
skip=(tests/core/test_refcounts.py::test_register_select_unregister_does_not_leak
      tests/core/test_refcounts.py::test_unregister_after_close_does_not_grow_memory
      tests/core/test_refcounts.py::test_epoll_poller_close_without_unregister_does_not_grow_memory)
while (($#)); do
    if [[ $1 == -- ]]; then
        shift
        tests=("$@")
        skip=()
        break
    fi
    extra+=("$1")
    shift
done

work=$(mktemp -d "${TMPDIR:-/tmp}/fastmux-valgrind.XXXXXX")
cleanup() {
    if [[ ${FASTMUX_VALGRIND_KEEP:-0} == 1 ]]; then
        echo "valgrind-core: kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

echo "== copy the checkout to $work/src"
mkdir -p "$work/src" "$out"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # read-only: lists tracked files and untracked ones that are not ignored
    git -C "$repo" ls-files -z --cached --others --exclude-standard \
        | (cd "$repo" && tar --null --ignore-failed-read -T - -cf -) \
        | tar -xf - -C "$work/src"
else
    tar -C "$repo" --exclude=.git --exclude=build --exclude='*.so' --exclude='src/fastmux/*.c' \
        --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -xf - -C "$work/src"
fi

echo "== debug build (FASTMUX_DEBUG=1) in the copy"
(cd "$work/src" && FASTMUX_DEBUG=1 "$py" setup.py build_ext --inplace --force >"$out/build.log" 2>&1) || {
    tail -30 "$out/build.log" >&2
    echo "valgrind-core: the debug build failed (log: $out/build.log)" >&2
    exit 2
}
(cd "$work/src" && "$py" - <<'PY')
import fastmux._pollers_c as p, fastmux._selectors_c as s
assert p.__file__.startswith(__import__("os").getcwd()), p.__file__
assert p._debug_counters() and s._debug_counters() is not None, "not a FASTMUX_DEBUG build"
print("debug build:", p.__file__)
PY

# The pure-Python twins' parametrizations (ids like py, py-epoll, fd-py-poll)
# run no compiled code: left out unless FASTMUX_VALGRIND_FULL=1.
mkdir -p "$work/plugins"
cat >"$work/plugins/fastmux_valgrind_c_only.py" <<'PY'
import os


def pytest_collection_modifyitems(config, items):
    if os.environ.get("FASTMUX_VALGRIND_FULL") == "1":
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        (drop if callspec and "py" in callspec.id.split("-") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
PY

deselect=()
if [[ ${FASTMUX_VALGRIND_FULL:-0} != 1 ]]; then
    for id in "${skip[@]}"; do
        deselect+=(--deselect "$id")
    done
fi

echo "== pytest under valgrind memcheck: ${tests[*]} ${extra[*]} ${deselect[*]}"
rm -f "$out"/memcheck.*.log
start=$(date +%s)
set +e
(
    cd "$work/src"
    PYTHONMALLOC=malloc \
    PYTHONPATH="$work/plugins${PYTHONPATH:+:$PYTHONPATH}" \
    FASTMUX_SOAK_SCALE=${FASTMUX_SOAK_SCALE:-0.005} \
    timeout --signal=INT --kill-after=60 "$limit" \
    valgrind --tool=memcheck \
        --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        --track-origins=yes --num-callers=30 \
        --suppressions="$supp" \
        --log-file="$out/memcheck.%p.log" \
        "$py" -m pytest -p no:cacheprovider -p fastmux_valgrind_c_only -q -o faulthandler_timeout=600 --durations=15 \
        "${tests[@]}" "${deselect[@]}" "${extra[@]}"
) 2>&1 | tee "$out/pytest.log"
rc=${PIPESTATUS[0]}
set -e
elapsed=$(($(date +%s) - start))
echo "== pytest exit status $rc after ${elapsed}s under valgrind"

echo "== valgrind's report ($out/memcheck.<pid>.log: the pytest process, and any child it forked)"
set +e
"$py" - "$out"/memcheck.*.log <<'PY'
"""Count valgrind's error contexts in fastmux code, per process log."""
import re
import sys

# A frame in fastmux's compiled modules, or a block they allocated or freed.
FASTMUX = re.compile(r"_pollers_c|_selectors_c|_kernel_floor|fastmux_mem_")
# CPython 3.11 gh-119022 (see tools/valgrind-python.supp): a value made
# undefined by _PyLong_New's uninitialised digit, wherever it is used.
INT_TAINT = re.compile(r"\b_PyLong_New\b")
ORIGIN = "Uninitialised value was created"
HEADERS = ("Memcheck,", "Copyright", "Using Valgrind", "Command:", "Parent PID", "HEAP SUMMARY",
           "LEAK SUMMARY", "ERROR SUMMARY", "For lists", "For counts", "Use --track", "Rerun with",
           "Reachable blocks", "To see them", "in use at exit", "total heap usage")


def blocks_of(path):
    block = []
    for raw in open(path, errors="replace"):
        line = re.sub(r"^==\d+== ?", "", raw.rstrip("\n"))
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def is_error(block):
    return not block[0].startswith(HEADERS) and any(
        l.lstrip().startswith(("at 0x", "by 0x")) for l in block[1:])


total_ours = 0
for path in sys.argv[1:]:
    blocks = list(blocks_of(path))
    text = [l for b in blocks for l in b]
    command = next((l for l in text if l.startswith("Command:")), "")
    parent = next((l for l in text if l.startswith("Parent PID")), "")
    errors = [b for b in blocks if is_error(b)]
    ours, taint, others = [], [], []
    for b in errors:
        cut = next((i for i, l in enumerate(b) if l.lstrip().startswith(ORIGIN)), len(b))
        use, origin = b[1:cut], b[cut:]
        if origin and INT_TAINT.search("\n".join(origin)) and not FASTMUX.search("\n".join(origin)):
            taint.append(b)
        elif FASTMUX.search("\n".join(b[1:])):
            ours.append(b)
        else:
            others.append(b)
    total_ours += len(ours)
    if not any(l.startswith("ERROR SUMMARY") for l in text):
        print(f"\n  {path}: a child that exec'd another program (not traced)")
        continue
    print(f"\n  {path}  ({parent})")
    for l in text:
        if l.startswith("ERROR SUMMARY") or re.match(r"\s*(definitely|indirectly|possibly) lost:|\s*suppressed:", l):
            print("    " + l.strip())
    leaks = sum("definitely lost" in b[0] for b in errors)
    print(f"    error contexts: {len(errors)}: in fastmux code {len(ours)}; CPython 3.11 int "
          f"taint (gh-119022) {len(taint)}; other {len(others)} (definite leaks {leaks})")
    for b in ours:
        print("\n    --- error in fastmux code ---")
        for l in b[:60]:
            print("    " + l)
    if others:
        print("    outside fastmux, not counted (full stacks in the log):")
    for b in others:
        frames = [l.strip() for l in b[1:] if l.lstrip().startswith(("at 0x", "by 0x"))][:3]
        print(f"      {b[0]}")
        for f in frames:
            print(f"          {f}")
print(f"\n  valgrind error contexts in fastmux code: {total_ours}")
sys.exit(1 if total_ours else 0)
PY
verdict=$?
set -e

if ((verdict != 0)); then
    echo "valgrind-core: FAIL: valgrind found errors in fastmux code (logs: $out)"
    exit 1
fi
case $rc in
    0) echo "valgrind-core: OK: no valgrind error in fastmux code; tests passed"; exit 0 ;;
    1) if [[ ${FASTMUX_VALGRIND_ALLOW_TEST_FAILURES:-0} == 1 ]]; then
           echo "valgrind-core: OK: no valgrind error in fastmux code (some tests failed under valgrind: see $out/pytest.log)"
           exit 0
       fi
       echo "valgrind-core: no valgrind error in fastmux code, but tests failed under valgrind (see $out/pytest.log)"
       exit 3 ;;
    *) echo "valgrind-core: pytest did not finish normally (exit status $rc; 124 = timeout after ${limit}s)"; exit 2 ;;
esac
