# cython: language_level=3
# Augmenting declarations for fastmux.http._request_c, which is
# fastmux/http/request.py compiled as it is (see setup.py TWIN_MODULES and
# src/fastmux/http/_protocol_c.pxd).  Request becomes an extension type the
# compiled protocol builds and reads in C (it cimports this file).
cimport cython


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar)
cpdef tuple split_target(bytes target)
@cython.locals(req=Request)
cpdef Request new_request(method, raw_target, version, raw_headers, body, bint keep_alive, peer, raw_trailers)


cdef str _latin1(bytes raw)


@cython.locals(i=Py_ssize_t, n=Py_ssize_t, c=cython.uchar, d=cython.uchar)
cdef bint _same_name(bytes name, bytes other)


cdef class Request:
    cdef public object method, raw_target, version, raw_headers, body, peer, raw_trailers
    cdef public bint keep_alive
    cdef public object _split

    cdef _init(self, method, raw_target, version, raw_headers, body, bint keep_alive, peer, raw_trailers)
    cpdef tuple _parts(self)
    cpdef get_header(self, str name, default=*)
    cpdef get_raw_header(self, bytes name)
