"""Run the app: cheroot (CherryPy's production WSGI server) on the one configured address, with TLS.

Why cheroot and not waitress: waitress has no TLS (its documentation sends TLS to a reverse proxy),
and a second daemon (nginx) on the appliance only for TLS is more to configure and to secure.
cheroot terminates TLS itself with Python's ``ssl`` module, runs on Python 3.6 (9.0.0) and 3.8+
(10.x), and is pure Python.
"""

import logging
import signal
import ssl
import sys

from edge.errors import ConfigError
from edge.lazy import require
from edge.serve.auth import DeviceStore
from edge.serve.ratelimit import RateLimiter
from edge.serve.service import Service

LOG = logging.getLogger("medkiosk.serve")
SERVE_HINT = "pip install 'medkiosk[serve]'"
OP_IGNORE_UNEXPECTED_EOF = 0x80  # OpenSSL 3's SSL_OP_IGNORE_UNEXPECTED_EOF (not in Python 3.6's ssl)


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
        adapter = builtin.BuiltinSSLAdapter(cert, key)
        # A client that hangs up without a TLS close_notify is an ordinary end of the connection.
        # Without this, OpenSSL 3 reports it as an error that Python 3.6 does not know, and
        # cheroot's worker thread dies with it: four hang-ups and the service answers no more.
        if ssl.OPENSSL_VERSION_INFO >= (3,):
            adapter.context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", OP_IGNORE_UNEXPECTED_EOF)
        server.ssl_adapter = adapter
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
        _host, port = server.bind_addr[:2]
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
