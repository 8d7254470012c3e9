"""Process limits that fleet-scale work runs into: open files (a listening socket per simulated BMC, a keep-alive
connection per polled one)."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("redfleet.oslimits")


def _nr_open() -> int:
    """The kernel's ceiling for RLIMIT_NOFILE (/proc/sys/fs/nr_open), or 1,048,576 (its default) if unreadable."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 1 << 20


def raise_open_files(need: int) -> int:
    """Let this process hold ``need`` open files: the soft RLIMIT_NOFILE goes up to the hard one, and where the hard
    one is too low and the process may raise it (root, CAP_SYS_RESOURCE) the hard one too, up to the kernel's
    nr_open. Returns the soft limit now in force (maybe still below ``need``: callers decide what to do then)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return need if soft == resource.RLIM_INFINITY else soft
    why = "the hard limit"
    if hard != resource.RLIM_INFINITY and hard < need:
        ceiling = min(need, _nr_open())
        if ceiling > hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, ceiling))
            except (ValueError, OSError) as exc:
                why = f"the hard limit, which this process may not raise ({exc}): raise it with ulimit -Hn"
            else:
                log.info("open files: raised the limit from %d (hard %d) to %d", soft, hard, ceiling)
                return ceiling
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    if target > soft:
        log.info("open files: raised the soft limit from %d to %d", soft, target)
    if target < need:
        log.warning("open files: %d wanted, %d allowed by %s", need, target, why)
    return target
