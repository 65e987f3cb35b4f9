"""cffi binding modules, one per extension topic (pyca/cryptography style).

Each module names the headers whose ``/* cffi:begin */`` regions Python
sees (HEADERS: included by the extension, and turned into its cdef by
native_shim/cdef.py) and the C files compiled into the extension
(SOURCES); CUSTOMIZATIONS, if present, is extra C for ``ffi.set_source()``.
The declarations themselves live in the headers only.
"""
