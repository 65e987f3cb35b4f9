"""cffi binding modules, one per extension topic (pyca/cryptography style).

Each module defines four strings: INCLUDES and CUSTOMIZATIONS go to
``ffi.set_source()``, TYPES and FUNCTIONS to ``ffi.cdef()``; SOURCES lists the
C files compiled into the extension.
"""
