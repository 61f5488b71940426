"""optuna-dashboard on a study database, served from this process.

optuna-dashboard's WSGI app (:func:`optuna_dashboard.wsgi`) behind the standard library's
WSGI server, threaded, with its request log at debug level: the server is bound before
the URL is printed, so a busy port is a clear error and ``port=0`` picks a free one.
"""

from __future__ import annotations

import logging
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from search import study as studylib

log = logging.getLogger(__name__)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def dashboard_server(storage: str, study_name: str, host: str = "127.0.0.1",
                     port: int = 8080) -> tuple[WSGIServer, str]:
    """A bound (not yet serving) optuna-dashboard server on ``storage`` and the URL of the study."""
    import optuna_dashboard

    store = studylib.make_storage(storage)
    study_id = store.get_study_id_from_name(study_name)
    try:
        server = make_server(host, port, optuna_dashboard.wsgi(store), server_class=_ThreadingServer,
                             handler_class=_QuietHandler)
    except OSError as e:
        raise ValueError(f"cannot serve the dashboard on {host}:{port}: {e.strerror or e}") from None
    return server, f"http://{host}:{server.server_port}/dashboard/studies/{study_id}"
