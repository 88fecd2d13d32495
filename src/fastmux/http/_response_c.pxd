# cython: language_level=3
# Augmenting declarations for fastmux.http._response_c, which is
# fastmux/http/response.py compiled as it is (see setup.py TWIN_MODULES and
# src/fastmux/http/_protocol_c.pxd): the app twin (_app_c) frames responses
# with these as C calls.

cdef class Clock:
    cdef public bytes date, date_line
    cdef public list hello
    cdef public dict heads, _dates
    cdef public object _second
    cdef public int last_status
    cdef public bint last_text
    cdef public tuple last_headers
    cdef public bytes last_opening, last_head
    cdef public Py_ssize_t last_end_key

cpdef bytes head_end(content_length, int conn)
cpdef bytes head_start(Clock clock, int status, bytes extra=*, bint server=*, bint date=*)
