# cython: language_level=3
# Augmenting declarations for fastmux.http._request_c, which is
# fastmux/http/request.py compiled as it is (see setup.py TWIN_MODULES and
# src/fastmux/http/_protocol_c.pxd).  Request becomes an extension type the
# compiled protocol builds and reads in C (it cimports this file).
cimport cython


@cython.locals(n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar)
cpdef tuple split_target(bytes target)
@cython.locals(n=Py_ssize_t, i=Py_ssize_t, start=Py_ssize_t, end=Py_ssize_t, fields=list)
cpdef list split_head(bytes head)
@cython.locals(n=Py_ssize_t, m=Py_ssize_t, i=Py_ssize_t, start=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t) _value_at(bytes head, bytes name)
@cython.locals(start=Py_ssize_t, end=Py_ssize_t)
cpdef find_field(bytes head, bytes name)
@cython.locals(req=Request)
cpdef Request new_request(method, raw_target, version, raw_headers, body, bint keep_alive, peer, raw_trailers)


cdef str _latin1(bytes raw)
@cython.locals(i=Py_ssize_t)
cdef str _decoded_path(bytes raw)


@cython.locals(i=Py_ssize_t, n=Py_ssize_t, c=cython.uchar, d=cython.uchar)
cdef bint _same_name(bytes data, Py_ssize_t at, bytes name)


cdef class Request:
    cdef public object method, raw_target, version, body, peer, raw_trailers
    cdef public bint keep_alive
    cdef public object _split, _raw_headers
    cdef public bytes _head

    cdef _init(self, method, raw_target, version, raw_headers, body, bint keep_alive, peer, raw_trailers)
    cpdef tuple _parts(self)
    @cython.locals(raw_name=bytes, head=bytes, start=Py_ssize_t, end=Py_ssize_t)
    cpdef get_header(self, str name, default=*)
    cpdef get_raw_header(self, bytes name)
