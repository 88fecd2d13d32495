"""pytest-benchmark suite: stdlib vs fastmux selectors, one operation per test.

    pytest bench/test_bench_selectors.py --benchmark-only --benchmark-group-by=param:case

N registered sockets (N/2 socket pairs, both ends registered), K readable;
the same workloads as ``fastmux bench selectors`` (which adds the kernel
floor and ratio columns).
"""
from __future__ import annotations

import pytest

pytest.importorskip("pytest_benchmark")

from fastmux.benchmarks import _selector_workloads as w  # noqa: E402

IMPLS = ("stdlib", "fastmux")
SELECT_CASES = [(10, 1), (1000, 1), (1000, 10), (1000, 100), (1000, 1000), (10000, 1), (10000, 100), (10000, 1000)]


def _case_id(case):
    return f"N{case[0]}-K{case[1]}"


def _skip_if_select_cannot_watch(backend, socks):
    if w.select_cannot_watch(backend, socks):
        pytest.skip("select() cannot watch fds >= FD_SETSIZE")


@pytest.fixture(scope="module", params=SELECT_CASES, ids=_case_id)
def socket_set(request):
    n, k = request.param
    socks = w.SocketSet(n, k)
    yield request.param, socks
    socks.close()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_select_zero(benchmark, socket_set, impl, backend):
    (n, k), socks = socket_set
    _skip_if_select_cannot_watch(backend, socks.socks)
    benchmark.group = f"select(0) {backend} N={n} K={k}"
    select = w.select_call(impl, backend, socks)
    assert len(benchmark(select)) == k


@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_raw_stdlib_poll(benchmark, socket_set, backend):
    """The stdlib select module's own call: less than a selector must build."""
    (n, k), socks = socket_set
    _skip_if_select_cannot_watch(backend, socks.socks)
    benchmark.group = f"select(0) {backend} N={n} K={k}"
    benchmark(w.raw_poll_call(backend, socks))


@pytest.fixture(scope="module")
def ops_sockets():
    socks = w.SocketSet(1000, 1)
    yield socks.socks
    socks.close()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_register_unregister_1000(benchmark, ops_sockets, impl, backend):
    _skip_if_select_cannot_watch(backend, ops_sockets)
    benchmark.group = f"register+unregister x1000 {backend}"
    benchmark(w.register_unregister_call(impl, backend, ops_sockets))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("backend", ["epoll", "poll", "select"])
def test_modify_2000(benchmark, ops_sockets, impl, backend):
    _skip_if_select_cannot_watch(backend, ops_sockets)
    benchmark.group = f"modify x2000 {backend}"
    benchmark(w.modify_call(impl, backend, ops_sockets))
