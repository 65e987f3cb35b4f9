"""Servers that are not ready in one precise way, for the readiness tests.

    python tinyserver.py MODE PORT [CERT KEY]

  silent  accepts and never says anything (plain TCP)
  http    answers every connection with an HTTP 400 (plain TCP, not TLS)
  sip404  TLS, answers every request with SIP/2.0 404
Ends by itself after 60 s.
"""
import signal
import socket
import ssl
import sys
import threading

mode, port = sys.argv[1], int(sys.argv[2])
signal.alarm(60)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(16)
ctx = None
if mode == "sip404":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
held = []


def serve(c):
    try:
        if mode == "http":
            c.recv(4096)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            c.close()
        elif mode == "sip404":
            s = ctx.wrap_socket(c, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return
                data += chunk
            s.sendall(b"SIP/2.0 404 Not here\r\nContent-Length: 0\r\n\r\n")
        else:
            held.append(c)
    except (OSError, ssl.SSLError):
        pass


while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
