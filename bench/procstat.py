"""CPU time and resident memory of a running process, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds the process has used (``/proc/<pid>/stat`` utime + stime)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "; utime and stime are fields 14, 15
    return (int(fields[11]) + int(fields[12])) / _TICKS


def steal_seconds() -> float:
    """CPU seconds the hypervisor gave to other guests, summed over this machine's cores (``/proc/stat``,
    the ``steal`` column): the noise a shared virtual machine adds to every figure."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / _TICKS if len(fields) > 8 else 0.0


def steal_share(before: float, after: float, seconds: float) -> float:
    """The share of the machine's CPU taken by steal between two ``steal_seconds`` readings."""
    return round((after - before) / max(seconds * (os.cpu_count() or 1), 1e-9), 3)


def rss_bytes(pid: int) -> int:
    """Resident memory now (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0
