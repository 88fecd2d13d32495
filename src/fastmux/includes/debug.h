/* Debug-build switches of the compiled core (uvloop's includes/debug.h style).
 *
 * setup.py passes -DFASTMUX_DEBUG=1 for a FASTMUX_DEBUG=1 build and
 * -DFASTMUX_DEBUG=0 otherwise; the default below covers any other compile.
 *
 * With FASTMUX_DEBUG 1 every module that includes this header keeps leak
 * counters: C buffers obtained, resized and freed through fastmux_mem_realloc
 * and fastmux_mem_free, plus whatever objects and descriptors its .pyx counts
 * in `fastmux_debug_counters` under `if FASTMUX_DEBUG:`.  Each module's
 * `_debug_counters()` reports them; tests/hardening/test_core_memory.py
 * asserts they return to baseline.
 *
 * With FASTMUX_DEBUG 0 (release) nothing is counted: fastmux_mem_realloc and
 * fastmux_mem_free *are* PyMem_Realloc and PyMem_Free, and the .pyx blocks
 * guarded by `if FASTMUX_DEBUG:` are `if (0)` for the C compiler, so release
 * code is the same as without this header.
 */
#ifndef FASTMUX_INCLUDES_DEBUG_H
#define FASTMUX_INCLUDES_DEBUG_H

#include <Python.h>

#ifndef FASTMUX_DEBUG
#define FASTMUX_DEBUG 0
#endif

typedef struct {
    Py_ssize_t buffers_allocated;  /* fastmux_mem_realloc(NULL, n) that succeeded */
    Py_ssize_t buffers_resized;    /* fastmux_mem_realloc of a live buffer */
    Py_ssize_t buffers_freed;      /* fastmux_mem_free of a non-NULL buffer */
    Py_ssize_t objects_created;    /* the module's extension objects (__cinit__) */
    Py_ssize_t objects_freed;      /* ... and their __dealloc__ */
    Py_ssize_t fds_opened;         /* kernel descriptors the module owns */
    Py_ssize_t fds_closed;
} fastmux_debug_counters_t;

/* static: each extension module gets its own set.  Only ever touched with the
 * GIL held (every PyMem_* call needs it anyway), so plain integers do. */
static fastmux_debug_counters_t fastmux_debug_counters;

#if FASTMUX_DEBUG

static inline void *
fastmux_mem_realloc(void *p, size_t n)
{
    void *q = PyMem_Realloc(p, n);
    if (q != NULL) {
        if (p == NULL)
            fastmux_debug_counters.buffers_allocated++;
        else
            fastmux_debug_counters.buffers_resized++;
    }
    return q;
}

static inline void
fastmux_mem_free(void *p)
{
    if (p != NULL)
        fastmux_debug_counters.buffers_freed++;
    PyMem_Free(p);
}

#else

#define fastmux_mem_realloc PyMem_Realloc
#define fastmux_mem_free PyMem_Free

#endif /* FASTMUX_DEBUG */

#endif /* FASTMUX_INCLUDES_DEBUG_H */
