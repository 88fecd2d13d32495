# cython: language_level=3
# The debug build's switch and leak counters (see debug.h).  Code that counts
# writes `if FASTMUX_DEBUG: counters.field += 1`, which the C compiler drops
# from release builds, and allocates its C buffers with mem_realloc/mem_free,
# which are PyMem_Realloc/PyMem_Free themselves in release builds.


cdef extern from "includes/debug.h":
    const int FASTMUX_DEBUG

    ctypedef struct fastmux_debug_counters_t:
        Py_ssize_t buffers_allocated
        Py_ssize_t buffers_resized
        Py_ssize_t buffers_freed
        Py_ssize_t objects_created
        Py_ssize_t objects_freed
        Py_ssize_t fds_opened
        Py_ssize_t fds_closed

    fastmux_debug_counters_t counters "fastmux_debug_counters"

    void *mem_realloc "fastmux_mem_realloc"(void *p, size_t n)
    void mem_free "fastmux_mem_free"(void *p)


cdef inline dict counters_dict():
    """The calling module's counters, with the live balances; {} in release builds."""
    if not FASTMUX_DEBUG:
        return {}
    return {
        "buffers_allocated": counters.buffers_allocated,
        "buffers_resized": counters.buffers_resized,
        "buffers_freed": counters.buffers_freed,
        "buffers_live": counters.buffers_allocated - counters.buffers_freed,
        "objects_created": counters.objects_created,
        "objects_freed": counters.objects_freed,
        "objects_live": counters.objects_created - counters.objects_freed,
        "fds_opened": counters.fds_opened,
        "fds_closed": counters.fds_closed,
        "fds_open": counters.fds_opened - counters.fds_closed,
    }
