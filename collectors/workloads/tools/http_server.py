"""The static HTTP server the wrk workload starts when no URL is given (standard library only).

``python -m collectors.workloads.tools.http_server http --root DIR [--host H] [--port P] [--fd N]``
serves the files of ``DIR`` over HTTP/1.1 (keep-alive, so that ``wrk``'s
connections stay open), logs nothing per request, and prints one JSON line
``{"event": "ready", "port": N}`` on stdout once it listens (``--port 0``
picks a free port, so there is no race between choosing and binding it;
``--fd N`` serves on the listening socket it inherited as descriptor N
instead: the wrk workload binds it to 127.0.0.1 itself, then starts this
server unprivileged, as user ``nobody``, from a copy of this file run with
``python -I``).
It is the tuned process of :class:`collectors.workloads.tools.wrk.WrkWorkload`
when no URL is given. It runs until it is signalled. It imports neither pandas
nor the tool modules (:mod:`collectors.workloads.tools` imports nothing), so
the tuned process stays small and starts fast.
"""

from __future__ import annotations

import argparse
import functools
import json
import socket
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["main", "serve_http"]


class _QuietHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: SimpleHTTPRequestHandler sends Content-Length
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: object) -> None:
        """No per-request log line (a long wrk run would otherwise fill the log)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve_http(root: str, host: str = "127.0.0.1", port: int = 0, fd: int | None = None) -> None:
    """Serve ``root`` on ``host:port`` (or on the listening socket ``fd``) until killed; print the ready
    line first."""
    handler = functools.partial(_QuietHandler, directory=root)
    srv = _Server((host, port), handler, bind_and_activate=fd is None)
    if fd is not None:
        srv.socket.close()
        srv.socket = socket.socket(fileno=fd)
        srv.server_address = srv.socket.getsockname()
    with srv:
        print(json.dumps({"event": "ready", "port": srv.server_address[1]}), flush=True)
        srv.serve_forever(poll_interval=0.5)


def main(argv: list[str] | None = None) -> int:
    """The command line above; 0 when signalled, 1 when the server cannot bind."""
    parser = argparse.ArgumentParser(prog="python -m collectors.workloads.tools.http_server")
    sub = parser.add_subparsers(dest="server", required=True)
    http = sub.add_parser("http", help="static HTTP/1.1 file server")
    http.add_argument("--root", required=True)
    http.add_argument("--host", default="127.0.0.1")
    http.add_argument("--port", type=int, default=0)
    http.add_argument("--fd", type=int, default=None, help="an inherited listening socket to serve on")
    args = parser.parse_args(argv)
    try:
        serve_http(args.root, args.host, args.port, args.fd)
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        print(f"http server: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
