"""The environment of a build step that must find libraries of the build's
own prefix before this machine's: a recipe's `deps` (GnuTLS 3.8.10+ needs
nettle 3.10, newer than Debian 12's), built first into the same prefix."""
from __future__ import annotations

import os
from pathlib import Path


class prefix_env:
    """The prefix's own libraries first, for configure and the link (pkg-config,
    headers, -L) and at run time (an RPATH in what is built: the dependency's
    soname may be this machine's too, libnettle.so.8).  Restores what it set."""

    def __init__(self, dest: Path | None, env: dict | None = None):
        if dest is None:
            self.env = dict(env or {})
        else:
            lib, inc = dest / "usr" / "lib", dest / "usr" / "include"
            self.env = {"PKG_CONFIG_PATH": str(lib / "pkgconfig"), "CPPFLAGS": f"-I{inc}",
                        "LDFLAGS": f"-L{lib} -Wl,-rpath,{lib} -Wl,--disable-new-dtags"}
        self.saved: dict[str, str | None] = {}

    @classmethod
    def extra(cls, env: dict) -> "prefix_env":
        """Only these variables, for one step (restored after it)."""
        return cls(None, env)

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        return self

    def __exit__(self, *exc):
        for k, old in self.saved.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
        return False
