"""Per-run certificates, made with the openssl command line in a child
process (the controller itself never loads a TLS library)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

KEYS = {
    "ec": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    "rsa": ["-newkey", "rsa:2048"],
}


class CertError(RuntimeError):
    pass


def make_cert(directory: Path, kind: str = "ec") -> tuple[str, str]:
    """Write cert.pem and key.pem for CN=127.0.0.1; return their paths."""
    exe = shutil.which("openssl")
    if exe is None:
        raise CertError("the openssl command is missing (apt-get install openssl)")
    cert, key = directory / "cert.pem", directory / "key.pem"
    cmd = [exe, "req", "-x509", *KEYS[kind], "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
           "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise CertError(f"openssl req failed: {r.stderr.strip().splitlines()[-1:]}")
    return str(cert), str(key)
