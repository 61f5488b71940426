"""optuna-dashboard on a study database, served from this process.

optuna-dashboard's WSGI app (:func:`optuna_dashboard.wsgi`) behind the standard library's
WSGI server, threaded, with its request log at debug level: the server is bound before
the URL is printed, so a busy port is a clear error and ``port=0`` picks a free one.

optuna-dashboard itself checks neither who asks nor what for: any request that reaches the
port may rename, edit or delete studies. :class:`Guard` sits in front of it and refuses:

- a request whose ``Host`` header is not an address the server is opened by: ``127.0.0.1``,
  ``localhost`` or ``[::1]``, or the ``--host`` it is bound to (and, bound to every
  address, this machine's name), each with the served port; open it from another machine
  by its name or by ``--host`` set to its address. A web page can point a name
  of its own at 127.0.0.1 (DNS rebinding) and so reach the port from the user's browser;
  its requests then carry that name as ``Host`` and are refused (403);
- anything but GET and HEAD, unless writes are enabled (``castsearch dashboard
  --allow-writes``; 405). Viewing needs only GET: every read route of optuna-dashboard
  (study list and detail, plots, parameter importances, CSV, artifacts, the page and its
  static files) is a GET; its POST, PUT and DELETE routes write (or ask an LLM, which
  castsearch does not set up);
- with writes enabled, a write whose ``Origin`` header names another site (403), and every
  DELETE (403): deleting a study (trials have no delete route) cannot be undone, and
  castsearch uses none of the other deletions (preferential-optimization history,
  artifacts). Delete a study with ``optuna delete-study`` instead.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.study import storage as studylib

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "")
READ_METHODS = ("GET", "HEAD")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def served_hosts(host: str, port: int) -> set[str]:
    """The ``Host`` header values (lower case) a server bound to ``host``:``port`` answers."""
    names = {*LOOPBACK, host.lower()} - {""}
    if host in WILDCARD:
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    hosts = {f"{name}:{port}" for name in names}
    return hosts | names if port == 80 else hosts


class Guard:
    """WSGI middleware: the ``Host`` check and the read-only rule of the module docstring."""

    def __init__(self, app: Callable, hosts: set[str], allow_writes: bool = False):
        self.app, self.hosts, self.allow_writes = app, hosts, allow_writes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if environ.get("HTTP_HOST", "").lower() not in self.hosts:
            return _refuse(start_response, "403 Forbidden",
                           "unknown Host header: open the dashboard by the URL castsearch printed")
        if method in READ_METHODS:
            return self.app(environ, start_response)
        if not self.allow_writes:
            return _refuse(start_response, "405 Method Not Allowed",
                           "the dashboard is read-only: start it with `castsearch dashboard --allow-writes` "
                           "to edit notes or trials", [("Allow", ", ".join(READ_METHODS))])
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin.lower().split("://", 1)[-1] not in self.hosts:
            return _refuse(start_response, "403 Forbidden", f"writes from another site ({origin}) are refused")
        if method == "DELETE":
            return _refuse(start_response, "403 Forbidden",
                           "the dashboard deletes nothing: delete a study with `optuna delete-study`")
        return self.app(environ, start_response)


def _refuse(start_response: Callable, status: str, message: str,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def dashboard_server(storage: str, study_name: str, host: str = "127.0.0.1", port: int = 8080,
                     allow_writes: bool = False) -> tuple[WSGIServer, str]:
    """A bound (not yet serving) optuna-dashboard server on ``storage`` and the URL of the study;
    read-only unless ``allow_writes``, and answering only requests addressed to it (see above)."""
    import optuna_dashboard

    store = studylib.make_storage(storage)
    study_id = store.get_study_id_from_name(study_name)
    guard = Guard(optuna_dashboard.wsgi(store), set(), allow_writes)
    try:
        server = make_server(host, port, guard, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as e:
        raise ValueError(f"cannot serve the dashboard on {host}:{port}: {e.strerror or e}") from None
    guard.hosts = served_hosts(host, server.server_port)
    return server, f"http://{host}:{server.server_port}/dashboard/studies/{study_id}"
