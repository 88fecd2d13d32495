# cython: language_level=3
# Slices for the byte loops of the compiled twins (request.py): Cython
# compiles ``data[start:end]`` on bytes to PySequence_GetSlice, which builds
# and unpacks a slice object -- several times the cost of the copy for the
# short slices of a request head.  The pure-Python twin slices.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize


cdef inline bytes byte_span(bytes data, Py_ssize_t start, Py_ssize_t end):
    """``data[start:end]`` for 0 <= start <= end <= len(data)."""
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(data) + start, end - start)
