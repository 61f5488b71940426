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
  write but saving a note (:data:`NOTE_ROUTES`: ``PUT`` of a study's or a trial's note; 403).
  The other write routes change what the search recorded or cannot be undone: renaming a
  study (optuna-dashboard copies it and deletes the original), telling a trial (a RUNNING
  trial ends with values typed in), setting a trial's user attributes (castsearch's
  records: weights path, latency, accuracy), skipping a trial, creating a study, the
  preferential-optimization routes, uploading or deleting artifacts, migrating the schema,
  the LLM queries, and deleting a study (``optuna delete-study`` does that).

Writes are unauthenticated: whoever reaches the port may save notes. :func:`dashboard_server`
therefore refuses writes on an address other than loopback unless asked twice
(``allow_remote_writes``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search.study import storage as studylib

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
WILDCARD = ("0.0.0.0", "")
READ_METHODS = ("GET", "HEAD")
# The writes --allow-writes lets through, matched on the whole PATH_INFO, ASCII digits only
# (optuna-dashboard 0.21's save_study_note and save_trial_note).
NOTE_ROUTES = (re.compile(r"/api/studies/[0-9]+/note", re.ASCII),
               re.compile(r"/api/studies/[0-9]+/[0-9]+/note", re.ASCII))


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
        method = environ["REQUEST_METHOD"].upper()  # as bottle routes it: "delete" is a DELETE
        if environ.get("HTTP_HOST", "").lower() not in self.hosts:
            return _refuse(start_response, "403 Forbidden",
                           "unknown Host header: open the dashboard by the URL castsearch printed")
        if method in READ_METHODS:
            return self.app(environ, start_response)
        if not self.allow_writes:
            return _refuse(start_response, "405 Method Not Allowed",
                           "the dashboard is read-only: start it with `castsearch dashboard --allow-writes` "
                           "to save notes", [("Allow", ", ".join(READ_METHODS))])
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and origin.lower().split("://", 1)[-1] not in self.hosts:
            return _refuse(start_response, "403 Forbidden", f"writes from another site ({origin}) are refused")
        if method == "DELETE":
            return _refuse(start_response, "403 Forbidden",
                           "the dashboard deletes nothing: delete a study with `optuna delete-study`")
        if not is_note_write(method, environ.get("PATH_INFO", "")):
            return _refuse(start_response, "403 Forbidden",
                           "the dashboard saves notes only: renaming studies, telling trials, editing their "
                           "attributes and every other write are refused")
        return self.app(environ, start_response)


def is_note_write(method: str, path: str) -> bool:
    """Whether ``method`` ``path`` saves a study's or a trial's note (:data:`NOTE_ROUTES`)."""
    return method.upper() == "PUT" and any(route.fullmatch(path) for route in NOTE_ROUTES)


def is_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost, or "" (every address)
        return False


def _refuse(start_response: Callable, status: str, message: str,
            headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def dashboard_server(storage: str, study_name: str, host: str = "127.0.0.1", port: int = 8080,
                     allow_writes: bool = False, allow_remote_writes: bool = False) -> tuple[WSGIServer, str]:
    """A bound (not yet serving) optuna-dashboard server on ``storage`` and the URL of the study;
    read-only unless ``allow_writes``, and answering only requests addressed to it (see above).

    Writes on a ``host`` other than loopback are a ValueError unless ``allow_remote_writes``
    too (then logged as a warning): anyone who reaches the address could write."""
    if allow_writes and not is_loopback(host):
        if not allow_remote_writes:
            raise ValueError(f"--allow-writes with --host {host or '0.0.0.0'} would let anyone who reaches it "
                             f"write to the study unauthenticated: serve writes on 127.0.0.1 only "
                             f"(and reach it through an SSH tunnel), or serve read-only")
        log.warning("the dashboard on %s takes unauthenticated writes (notes) from the network",
                    host or "0.0.0.0")
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
