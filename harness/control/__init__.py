"""The controller side: runs the other processes, samples them, writes results.
Never loads a TLS library."""
