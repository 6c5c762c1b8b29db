"""The machine the benchmark runs on: process setup (CPU pinning, file limits) and a description
of the hardware and software versions for the report."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psutil


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to the hard limit; returns the new limit.

    Children (brokers, load generators) inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1_048_576)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_to_cpu(cpu: int | None) -> None:
    """Pin the calling process to one CPU (no-op for None or a CPU that does not exist)."""
    if cpu is not None and 0 <= cpu < (os.cpu_count() or 1):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {cpu})


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mosquitto_version() -> str:
    exe = shutil.which("mosquitto")
    if exe is None:
        return "mosquitto not found"
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    lines = (out.stdout + out.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe(nofile: int) -> dict[str, Any]:
    """Machine and software facts for the report header."""
    return {
        "date": datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"Python {platform.python_version()} ({sys.executable})",
        "mosquitto": mosquitto_version(),
        "thingcore": package_version("thingcore"),
        "uvloop": package_version("uvloop"),
        "amqtt": package_version("amqtt"),
        "nofile_limit": nofile,
    }


def busy_cores(interval: float = 1.0) -> float:
    """CPU used by all processes over `interval` seconds, in cores (2.0 = two busy cores)."""
    before = psutil.cpu_times()
    time.sleep(interval)
    after = psutil.cpu_times()
    fields = ("user", "nice", "system", "steal")
    used = sum(getattr(after, f, 0.0) - getattr(before, f, 0.0) for f in fields)
    return float(used) / interval


def wait_until_quiet(max_wait: float, threshold: float, log: Callable[[str], None]) -> float:
    """Wait (up to `max_wait` s) until other processes use less than `threshold` of a core;
    returns the last reading. Meant to run while no broker or load generator is running."""
    deadline = time.monotonic() + max_wait
    busy = busy_cores()
    while busy > threshold and time.monotonic() < deadline:
        log(f"  machine busy ({busy:.0%} of a core used by other processes); waiting")
        busy = busy_cores(2.0)
    return busy
