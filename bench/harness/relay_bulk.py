#!/usr/bin/env python3
"""Bulk endpoints for the relay benchmark (Python standard library; the
kernel does the copying, one 1 MiB send or receive per call).

  relay_bulk.py server [ADDR]:PORT
      accepts; reads each connection to EOF, answers the byte count (8 bytes,
      big-endian) and closes. Prints 'ready' once listening.
  relay_bulk.py client ADDR PORT STREAMS SECONDS
      STREAMS connections send for SECONDS, then half-close and read the
      server's count (5 s at most: relays that do not pass a half-close on,
      such as systemd-socket-proxyd, lose it). Prints one JSON line: bytes
      sent, seconds, bytes_per_s, and complete (every count came back equal
      to what was sent).
"""
import json
import socket
import sys
import threading
import time

BLOCK = b"\x5a" * (1 << 20)


def serve(spec):
    host, _, port = spec.rpartition(":")
    lst = socket.socket(socket.AF_INET6)
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind((host.strip("[]"), int(port)))
    lst.listen(1024)
    print("ready", flush=True)

    def drain(conn):
        buf = bytearray(1 << 20)
        total = 0
        with conn:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                total += n
            conn.sendall(total.to_bytes(8, "big"))

    while True:
        conn, _ = lst.accept()
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def client(host, port, streams, seconds):
    counts = []
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + seconds

    def one():
        s = socket.create_connection((host, port))
        sent = 0
        while time.monotonic() < deadline:
            s.sendall(BLOCK)
            sent += len(BLOCK)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(5)
        got = b""
        try:
            while len(got) < 8:
                chunk = s.recv(8 - len(got))
                if not chunk:
                    break
                got += chunk
        except OSError:
            pass
        s.close()
        with lock:
            counts.append((sent, int.from_bytes(got, "big") if len(got) == 8 else -1))

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(sent for sent, _ in counts)
    print(
        json.dumps(
            {
                "bytes": total,
                "seconds": round(elapsed, 3),
                "bytes_per_s": total / elapsed,
                "streams": streams,
                "complete": len(counts) == streams and all(s == c for s, c in counts),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["server"]:
        serve(sys.argv[2])
    elif sys.argv[1:2] == ["client"]:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    else:
        sys.exit(__doc__)
