"""Run the app: cheroot (CherryPy's production WSGI server) on the one configured address, with TLS.

Why cheroot and not waitress: waitress has no TLS (its documentation sends TLS to a reverse proxy),
and a second daemon (nginx) on the appliance only for TLS is more to configure and to secure.
cheroot terminates TLS itself with Python's ``ssl`` module, runs on Python 3.6 (9.0.0) and 3.8+
(10.x), and is pure Python.
"""

import logging
import os
import signal
import ssl
import sys
import threading
import time

from edge.errors import ConfigError
from edge.lazy import require
from edge.serve.auth import DeviceStore
from edge.serve.ratelimit import RateLimiter
from edge.serve.service import Service

LOG = logging.getLogger("medkiosk.serve")
SERVE_HINT = "pip install 'medkiosk[serve]'"
OP_IGNORE_UNEXPECTED_EOF = 0x80  # OpenSSL 3's SSL_OP_IGNORE_UNEXPECTED_EOF (not in Python 3.6's ssl)
# On SIGTERM: idle keep-alive connections are closed at once; a request in flight gets GRACE_SECONDS to
# finish, then cheroot shuts its socket. The whole stop is bounded by STOP_SECONDS (below systemd's
# TimeoutStopSec=20s), so a worker thread that still does not end (cheroot 9/10 then join it with no
# timeout) cannot keep the process alive: one journal line, exit code STOP_TIMED_OUT.
GRACE_SECONDS = 2
STOP_SECONDS = 10
STOP_TIMED_OUT = 3
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def build_server(settings, service, app):
    """A cheroot server bound to ``settings.bind``:``settings.port`` (TLS when ``settings.tls``)."""
    wsgi = require("cheroot.wsgi", SERVE_HINT)
    server = wsgi.Server((str(settings.bind), settings.port), app, numthreads=settings.http_threads,
                         request_queue_size=16, timeout=30, shutdown_timeout=GRACE_SECONDS)
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


def server_workers(server):
    """The worker threads of a running cheroot ``server``, found by public means: the live threads
    that are cheroot's ``WorkerThread`` and serve this server (``WorkerThread.server``), not the
    pool's private list (tests/edge/serve/test_serve_stop.py fails if cheroot changes either)."""
    threadpool = require("cheroot.workers.threadpool", SERVE_HINT)
    return [thread for thread in threading.enumerate()
            if isinstance(thread, threadpool.WorkerThread) and thread.server is server]


def stop_within(server, seconds):
    """``server.stop()`` bounded by ``seconds``: the names of the threads still running ([] when it
    stopped in time).

    cheroot's ``ThreadPool.stop`` joins a worker with no timeout once the grace is over, so the stop runs
    in a daemon thread and is abandoned (not waited for) when it overruns.
    """
    workers = server_workers(server)  # before the stop, which forgets them
    stopper = threading.Thread(target=server.stop, name="medkiosk-serve-stop")
    stopper.daemon = True
    stopper.start()
    stopper.join(seconds)
    if not stopper.is_alive():
        return []
    return [thread.name for thread in workers if thread.is_alive()] or [stopper.name]


def _serve_until_signal(server, received):
    """Run ``server.serve()`` in a thread until a stop signal is in ``received`` or it ends; return the
    exception it ended with (None). The signal handlers only record the signal: an exception raised
    from a handler can land anywhere in cheroot's connection loop (and its locks), no state to stop from.
    """
    failure = []

    def run():
        try:
            server.serve()
        except BaseException as exc:  # re-raised in the main thread after the stop
            failure.append(exc)

    loop = threading.Thread(target=run, name="medkiosk-serve-loop")
    loop.daemon = True
    loop.start()
    while loop.is_alive() and not received:
        time.sleep(0.2)
    return failure[0] if failure else None


def hard_exit(code):
    """Flush the log and stdout, then end the process now, without waiting for stuck worker threads
    (a normal exit joins every non-daemon thread, which is the hang this avoids)."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _serve_and_stop(server, notifier):
    """Serve until SIGTERM/SIGINT, then stop within ``STOP_SECONDS``; return the exit code.

    The handlers stay in place until the stop is over, so a second signal during it is only recorded.
    """
    received = []
    previous = {number: signal.signal(number, lambda signum, _frame: received.append(signum))
                for number in STOP_SIGNALS}
    try:
        failure = _serve_until_signal(server, received)
        if received:
            LOG.info("stopping (signal %d)", received[0])
            if notifier is not None:
                notifier.stopping("stopping")
        running = stop_within(server, STOP_SECONDS)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if running:
        LOG.error("stop timed out: %s still busy %d s after the stop began; exiting without them (exit code "
                  "%d)", ", ".join(running), STOP_SECONDS, STOP_TIMED_OUT)
        return STOP_TIMED_OUT
    if failure is not None:
        raise failure
    LOG.info("stopped")
    return 0


def serve(settings, stdout=None, notifier=None):
    """Load the modules, bind, print one line, serve until SIGTERM/SIGINT; return the exit code.

    ``STOP_TIMED_OUT`` means worker threads were still running: the caller must end the process with
    ``hard_exit`` (a normal exit would wait for them), and the models are left open for them.
    """
    if not settings.enabled:
        raise ConfigError("the LAN service is off ([serve] enabled = no). Fix: set enabled = yes "
                                     "in the [serve] section of the config, then start it again")
    from edge.serve.app import create_app

    stdout = stdout or sys.stdout
    store = DeviceStore(settings.state_dir, settings.pair_seconds, settings.token_seconds)
    service = Service(settings).open()
    code = 0
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
        code = _serve_and_stop(server, notifier)
    finally:
        if code != STOP_TIMED_OUT:  # a stuck worker may still be using the models
            service.close()
    return code
