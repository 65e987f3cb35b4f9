"""The stand process and the probe child: the only processes that load a TLS library
(besides the load generators, which load their own in private memory)."""
