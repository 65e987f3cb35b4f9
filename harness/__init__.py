"""tlsharness: stress and deadlock reproduction harness for TLS libraries
inside multi-process (fork-based) servers.

The controller (this package's CLI) never loads a TLS library: nothing
imported at package level may pull in ssl, hashlib or a TLS extension.
"""
__version__ = "0.1.0"
