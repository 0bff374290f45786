"""Keep the server's native memory from creeping up under load (glibc only).

A busy server allocates and frees photo-sized arrays and attention maps from several threads.
After such frees glibc raises its mmap threshold, so later large blocks come from the per-thread
heap arenas, where freed space stays fragmented and is seldom handed back: under the load script
the server's RSS kept growing by about a megabyte a second while the memory of live Python objects
(tracemalloc) stayed flat. A fixed threshold sends large blocks to mmap, which returns them to the
system when freed, and two arenas stop every thread from growing its own.
"""

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameters (malloc.h)
M_ARENA_MAX = -8


def bound_fragmentation(mmap_threshold: int = 256 << 10, arenas: int = 2) -> bool:
    """Set glibc's mmap threshold (bytes) and arena count for this process; True when glibc took
    both, False where there is no glibc `mallopt` (macOS, Windows, musl), which changes nothing."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_ARENA_MAX, arenas) == 1
