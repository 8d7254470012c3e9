"""Open-file limit: raised as far as the process may, never past the kernel's ceiling."""

import resource

import pytest

from redfleet import oslimits


def test_raise_open_files_raises_the_hard_limit_where_allowed(monkeypatch):
    limits = {"now": (1024, 20_000)}
    calls: list[tuple[int, int]] = []

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        calls.append(value)
        if value[1] > limits["now"][1] and not limits.get("may"):
            raise ValueError("not allowed to raise maximum limit")
        limits["now"] = value

    monkeypatch.setattr(resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    monkeypatch.setattr(oslimits, "_nr_open", lambda: 30_000)
    assert oslimits.raise_open_files(25_000) == 20_000  # not allowed: the soft limit goes up to the hard one
    assert limits["now"] == (20_000, 20_000)
    limits["may"] = True
    assert oslimits.raise_open_files(25_000) == 25_000
    assert limits["now"] == (25_000, 25_000)
    assert oslimits.raise_open_files(50_000) == 30_000  # never past the kernel's nr_open
    assert oslimits.raise_open_files(10_000) == 30_000  # enough already: nothing changes
    assert calls[-1] == (30_000, 30_000)


def test_raise_open_files_lifts_the_soft_limit_up_to_what_is_allowed() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("hard open-file limit too low to test with")
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
        assert oslimits.raise_open_files(500) == 1000  # enough already: untouched
        assert oslimits.raise_open_files(1100) == 1100 == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if hard != resource.RLIM_INFINITY:
            got = oslimits.raise_open_files(hard + 10)  # more than the hard limit: as much as this process may have
            assert got >= hard and resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got
    finally:
        cur_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, cur_hard))
