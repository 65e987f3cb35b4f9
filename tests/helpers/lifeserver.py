"""A small SIP-over-TLS server for the process-lifetime tests: it forks
children that serve the same listening socket and never set
PR_SET_PDEATHSIG, so only the harness can clean them up.

    python lifeserver.py MODE PORT CERT KEY [N]

  fork    N children (default 2) serve; the parent waits for them
  daemon  double fork + setsid: the first process exits 0 at once, the
          daemon (in a new session) forks N children and serves
  flood   like fork (2 children), and the first process writes to stderr at
          N MB/s (default 100) in 1 MiB blocks
  setsid  like fork, but every child calls setsid() first
Every process ends by itself after 300 s (a safety net if a test fails).
"""
import os
import signal
import socket
import ssl
import sys
import threading
import time

mode, port, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
n = int(sys.argv[5]) if len(sys.argv) > 5 else (100 if mode == "flood" else 2)
signal.alarm(300)


def serve_conn(ctx, c):
    try:
        s = ctx.wrap_socket(c, server_side=True)
        buf = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return
            buf += chunk
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode(errors="replace").split("\r\n")
                keep = [l for l in lines[1:] if l.split(":")[0].lower() in
                        ("via", "from", "to", "call-id", "cseq")]
                s.sendall(("SIP/2.0 200 OK\r\n" + "".join(l + "\r\n" for l in keep)
                           + "Content-Length: 0\r\n\r\n").encode())
    except (OSError, ssl.SSLError):
        pass
    finally:
        c.close()


def serve(srv):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve_conn, args=(ctx, c), daemon=True).start()


def flood(rate_mb):
    block = (b"x" * 1023 + b"\n") * 1024
    t0, sent = time.monotonic(), 0
    while True:
        os.write(2, block)
        sent += 1
        ahead = sent / rate_mb - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)


def listen():
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(128)
    return srv


def children(srv, count, own_session=False):
    kids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            if own_session:
                os.setsid()
            serve(srv)
        kids.append(pid)
    return kids


if mode == "daemon":
    if os.fork():
        os._exit(0)                       # the started process ends at once
    os.setsid()
    if os.fork():
        os._exit(0)
    srv = listen()
    children(srv, n)
    print(f"lifeserver daemon {os.getpid()} on {port}", flush=True)
    serve(srv)
srv = listen()
children(srv, 2 if mode == "flood" else n, own_session=mode == "setsid")
print(f"lifeserver {mode} {os.getpid()} on {port}", flush=True)
if mode == "flood":
    threading.Thread(target=flood, args=(n,), daemon=True).start()
serve(srv)
