"""Run the app: cheroot (CherryPy's production WSGI server) on the one configured address, with TLS.

Why cheroot and not waitress: waitress has no TLS (its documentation sends TLS to a reverse proxy),
and a second daemon (nginx) on the appliance only for TLS is more to configure and to secure.
cheroot terminates TLS itself with Python's ``ssl`` module, runs on Python 3.6 (8.6.0) and 3.8+
(10.x), and is pure Python.
"""

import logging
import signal
import sys

from edge.errors import ConfigError, require
from edge.serve.auth import DeviceStore
from edge.serve.ratelimit import RateLimiter
from edge.serve.service import Service

LOG = logging.getLogger("medkiosk.serve")
SERVE_HINT = "pip install 'medkiosk[serve]'"


def build_server(settings, service, app):
    """A cheroot server bound to ``settings.bind``:``settings.port`` (TLS when ``settings.tls``)."""
    wsgi = require("cheroot.wsgi", SERVE_HINT)
    server = wsgi.Server((str(settings.bind), settings.port), app, numthreads=settings.http_threads,
                         request_queue_size=16, timeout=30, shutdown_timeout=5)
    server.max_request_body_size = settings.max_upload_bytes + 64 * 1024
    if settings.tls:
        from edge.serve.tls import make_certificate

        builtin = require("cheroot.ssl.builtin", SERVE_HINT)
        key, cert = make_certificate(settings.tls_dir, str(settings.bind))
        server.ssl_adapter = builtin.BuiltinSSLAdapter(cert, key)
    return server


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def serve(settings, stdout=None, notifier=None):
    """Load the modules, bind, print one line, serve until SIGTERM/SIGINT; return the exit code."""
    if not settings.enabled:
        raise ConfigError("the LAN service is off ([serve] enabled = no). Fix: set enabled = yes "
                                     "in the [serve] section of the config, then start it again")
    from edge.serve.app import create_app

    stdout = stdout or sys.stdout
    store = DeviceStore(settings.state_dir, settings.pair_seconds, settings.token_seconds)
    service = Service(settings).open()
    try:
        app = create_app(service, store, RateLimiter(settings.rate_per_minute), settings)
        server = build_server(settings, service, app)
        server.prepare()
        host, port = server.bind_addr[:2]
        settings.port = port
        names = ", ".join(service.modules) or "none"
        stdout.write("medkiosk serve: {} modules ({}) on {} (pair a device with `medkiosk serve "
                     "pair`)\n".format(len(service.modules), names, settings.url))
        stdout.flush()
        if notifier is not None:
            notifier.ready("serving on {}".format(settings.url))

        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve()
        except KeyboardInterrupt:
            LOG.info("stopping")
        finally:
            server.stop()
    finally:
        service.close()
    return 0
