# cython: language_level=3
# Augmenting declarations for fastmux.http._app_c, which is
# fastmux/http/app.py compiled as it is (see setup.py TWIN_MODULES and
# src/fastmux/http/_protocol_c.pxd): the compiled protocol calls render in C,
# and render reads the Request and the Clock's head cache as C fields.
cimport cython

from fastmux.http._request_c cimport Request
from fastmux.http._response_c cimport Clock, head_end, head_start


cdef _head_key(status, headers, bint text)
cdef bint _plain_pair(pair)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, last=tuple)
cdef bint _same_shape(Clock clock, status, headers, bint text)
cdef bytes _utf8(str text)
cdef _remember(Clock clock, tuple key, bytes opening)
@cython.locals(key=Py_ssize_t)
cdef bytes _framed(Clock clock, Py_ssize_t length, int conn)

@cython.locals(opening=bytes, data=bytes, head=bytes, cached=bint)
cpdef render(result, Request req, Clock clock, int conn)
