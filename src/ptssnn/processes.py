"""Child processes that die with their parent (standard library only, so a spawned child
runs :func:`child_main` before it imports torch or unpickles anything heavy).

On Linux the kernel sends a child SIGKILL when its parent dies (``PR_SET_PDEATHSIG``);
everywhere (and as a second guard) a thread in the child exits when its parent is gone. In
the parent, :func:`sigterm_as_exit` turns SIGTERM into ``SystemExit`` so ``finally`` clauses
stop the children before the parent exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # malloc.h (glibc)


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes that can still be allocated without swapping (Linux ``MemAvailable``), or
    ``None`` where the kernel does not say (other systems)."""
    try:
        with open(meminfo) as lines:
            for line in lines:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def retain_freed_memory() -> bool:
    """Keep freed memory in this process for reuse instead of handing it back to the OS.

    glibc serves every allocation above 32 MiB with a fresh ``mmap`` and unmaps it on free,
    so a training step whose tensors are that large (a 50 Hz batch of all 7 whisper-base
    hidden states is 92 MiB in float32) page-faults all of them in again on every step: at
    50 Hz that was 40 % of a step's CPU time, as system time (benchmarks/README.md,
    "Training step"). With mmap off and a high trim threshold the heap keeps its pages and
    reuses them. Numbers computed do not change; the resident memory stays near its peak
    until the process ends. Called by the processes that
    train (``ptssnn train``, ``benchmark``, ``demo`` and their workers); a Python user may
    call it too.

    The cost is memory: the 50 Hz benchmark's workers peaked at 6.3 GiB instead of 4.3 GiB.
    ``PTSSNN_RETAIN_FREED_MEMORY=0`` in the environment turns it off.

    Returns:
        Whether the setting took effect (glibc on Linux, not turned off; elsewhere nothing is
        changed).
    """
    if os.environ.get("PTSSNN_RETAIN_FREED_MEMORY", "1").strip() == "0":
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**30))


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when ``parent_pid`` does (call first thing in a child)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def child_main(parent_pid: int, target: str, payload: bytes, *channels: Any) -> None:
    """Entry point of a spawned child: tie it to its parent, then run
    ``target(*pickle.loads(payload), *channels)`` (``target`` as ``"module:function"``)."""
    die_with_parent(parent_pid)
    module, _, name = target.partition(":")
    function = getattr(importlib.import_module(module), name)
    function(*pickle.loads(payload), *channels)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block, SIGTERM raises ``SystemExit(143)`` in the main thread, so ``finally``
    clauses (which stop the children) run before the process ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
