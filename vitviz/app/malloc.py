"""Keep the server's native memory from creeping up under load (glibc only).

A busy server allocates and frees photo-sized arrays and attention maps from several threads.
After such frees glibc raises its mmap threshold, so later large blocks come from the per-thread
heap arenas, where freed space stays fragmented and is seldom handed back: under the load script
the server's RSS kept growing by about a megabyte a second while the memory of live Python objects
(tracemalloc) stayed flat. A fixed threshold sends large blocks to mmap, which returns them to the
system when freed, and two arenas stop every thread from growing its own.

The blocks below the threshold still fragment the arenas: under 20 users their free space grew
from about 50 to 130 MB over 8 minutes, while the memory in use levelled off once the caches were
full. `malloc_trim` hands the free pages inside the arenas back to the system; run every few
seconds it keeps the server's memory flat, for about 10 ms a call.
"""

import ctypes
import ctypes.util
import threading

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8


def _glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has `mallopt` and `malloc_trim`), else None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def bound_fragmentation(mmap_threshold: int = 256 << 10, arenas: int = 2) -> bool:
    """Set glibc's mmap threshold (bytes) and arena count for this process; True when glibc took
    both, False where there is no glibc `mallopt` (macOS, Windows, musl), which changes nothing."""
    libc = _glibc()
    return (libc is not None and libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
            and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def trim_every(seconds: float, stop: threading.Event | None = None) -> threading.Thread | None:
    """Hand the free pages of glibc's heap back to the system every `seconds`, from a daemon
    thread (returned), until `stop` is set (the server never sets it); None where there is no glibc."""
    libc = _glibc()
    if libc is None:
        return None
    stop = stop or threading.Event()

    def trim_until_stopped() -> None:
        while not stop.wait(seconds):
            libc.malloc_trim(0)  # ctypes releases the GIL meanwhile

    thread = threading.Thread(target=trim_until_stopped, name="malloc-trim", daemon=True)
    thread.start()
    return thread
