# cython: language_level=3
# The part of llhttp's API (src/fastmux/vendor/llhttp/llhttp.h) that
# fastmux.http._parser_c uses.  Struct fields and constants carry no layout
# or values here: the header supplies them.
from libc.stdint cimport uint8_t, uint16_t, uint64_t


cdef extern from "llhttp.h":
    # Not nogil: the callbacks are Cython functions that take the GIL's
    # presence for granted (llhttp_execute runs with the GIL held).
    ctypedef struct llhttp_t:
        int error
        void *data
        uint64_t content_length
        uint8_t method
        uint8_t http_major
        uint8_t http_minor
        uint8_t upgrade
        uint16_t flags

    ctypedef int (*llhttp_data_cb)(llhttp_t *parser, const char *at, size_t length) noexcept
    ctypedef int (*llhttp_cb)(llhttp_t *parser) noexcept

    ctypedef struct llhttp_settings_t:
        llhttp_cb on_message_begin
        llhttp_data_cb on_url
        llhttp_data_cb on_header_field
        llhttp_data_cb on_header_value
        llhttp_cb on_headers_complete
        llhttp_data_cb on_body
        llhttp_cb on_message_complete
        llhttp_cb on_chunk_header
        llhttp_cb on_chunk_complete


cdef extern from "llhttp.h" nogil:

    ctypedef enum llhttp_type_t:
        HTTP_REQUEST

    ctypedef enum llhttp_errno_t:
        HPE_OK
        HPE_INVALID_METHOD
        HPE_INVALID_URL
        HPE_INVALID_STATUS
        HPE_CB_MESSAGE_BEGIN
        HPE_CB_HEADERS_COMPLETE
        HPE_CB_MESSAGE_COMPLETE
        HPE_CB_CHUNK_HEADER
        HPE_CB_CHUNK_COMPLETE
        HPE_PAUSED_UPGRADE
        HPE_USER

    enum:
        F_CHUNKED
        F_UPGRADE
        F_CONTENT_LENGTH
        F_TRANSFER_ENCODING

    ctypedef enum llhttp_method_t:
        HTTP_GET
        HTTP_HEAD

    void llhttp_settings_init(llhttp_settings_t *settings)
    void llhttp_init(llhttp_t *parser, llhttp_type_t type, const llhttp_settings_t *settings)
    llhttp_errno_t llhttp_execute(llhttp_t *parser, const char *data, size_t length)
    void llhttp_resume_after_upgrade(llhttp_t *parser)
    int llhttp_should_keep_alive(const llhttp_t *parser)
    const char *llhttp_get_error_pos(const llhttp_t *parser)
    const char *llhttp_get_error_reason(const llhttp_t *parser)
    void llhttp_set_error_reason(llhttp_t *parser, const char *reason)
    const char *llhttp_method_name(llhttp_method_t method)
