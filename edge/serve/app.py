"""The HTTP layer (Flask): the JSON API under /api/v1 and the page, over ``Service`` and ``DeviceStore``.

Every request: client address inside [serve] allow, else 403; rate limit per device (per address
before pairing), else 429. Every /api/v1 route but pairing needs a device token, sent as
``Authorization: Bearer <token>`` (other systems) or the page's HttpOnly cookie; a cookie-borne
request that changes something must also carry ``X-CSRF-Token`` and, when the browser sends one,
a same-origin ``Origin``. Log lines name the route pattern and status only: never a case id, a
file name or a query string.
"""

import logging
import os
import time

from edge import __version__
from edge.errors import MedkioskError
from edge.serve.errors import AuthError, ServeError
from edge.serve.wording import render_page

LOG = logging.getLogger("medkiosk.serve")
STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
COOKIE = "medkiosk_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
OPEN_ENDPOINTS = ("page", "static", "pair")
FORM_OVERHEAD = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _flask():
    from edge.lazy import require

    return require("flask", "pip install 'medkiosk[serve]'")


def _bearer(request):
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip(), False
    return request.cookies.get(COOKIE), True


def _check_origin(request):
    origin = request.headers.get("Origin")
    if origin and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise AuthError("cross-site request refused. Fix: use the page served by the kiosk itself",
                        status=403, code="cross_origin")


def create_app(service, store, limiter, settings):
    """The Flask application; ``service`` must already be open."""
    flask = _flask()
    app = flask.Flask(__name__, static_folder=STATIC_DIR, static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + FORM_OVERHEAD
    request, g = flask.request, flask.g

    @app.before_request
    def guard():
        g.started = time.perf_counter()
        address = request.remote_addr or ""
        if not settings.allows(address):
            raise AuthError("this address is not on the kiosk's allowed networks. Fix: connect from the "
                            "clinic network, or ask the technician to add it to [serve] allow",
                            status=403, code="address_refused")
        g.device = None
        if request.endpoint in OPEN_ENDPOINTS or request.endpoint is None:
            limiter.check("address:" + address)
            if request.method in UNSAFE_METHODS:
                _check_origin(request)
            return None
        token, from_cookie = _bearer(request)
        try:
            g.device = store.authenticate(token)
        except AuthError:
            limiter.check("address:" + address)
            raise
        limiter.check("device:" + g.device["id"])
        if from_cookie and request.method in UNSAFE_METHODS:
            _check_origin(request)
            if request.headers.get(CSRF_HEADER) != store.csrf_token(g.device["id"]):
                raise AuthError("missing or wrong CSRF token. Fix: reload the page", status=403, code="csrf")
        return None

    @app.after_request
    def finish(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        started = getattr(g, "started", None)
        LOG.info("%s %s %s %.1f ms", request.method, request.url_rule.rule if request.url_rule else "-",
                 response.status_code, (time.perf_counter() - started) * 1000.0 if started else 0.0)
        return response

    _register_errors(app, flask)
    _register_routes(app, flask, service, store, settings)
    return app


def _error_response(flask, error):
    response = flask.jsonify(error.to_dict())
    response.status_code = error.status
    if error.retry_after:
        response.headers["Retry-After"] = str(error.retry_after)
    return response


def _register_errors(app, flask):
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    @app.errorhandler(ServeError)
    def serve_error(error):
        return _error_response(flask, error)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_error):
        limit = app.config["MAX_CONTENT_LENGTH"] - FORM_OVERHEAD
        return _error_response(flask, ServeError("the upload is larger than {:.0f} MB. Fix: send a smaller "
                                                 "picture".format(limit / 1048576.0), status=413,
                                                 code="too_large"))

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = error.name.lower().replace(" ", "_")
        return _error_response(flask, ServeError("{}. Fix: see docs/api/openapi.yaml".format(error.name),
                                                 status=error.code, code=code))

    @app.errorhandler(MedkioskError)
    def medkiosk_error(error):
        LOG.error("%s: %s", type(error).__name__, error)
        return _error_response(flask, ServeError(str(error), status=500, code="server_error"))


def _register_routes(app, flask, service, store, settings):
    request, g, jsonify = flask.request, flask.g, flask.jsonify

    @app.route("/")
    def page():
        return flask.Response(render_page([slot.title for slot in service.slots]), mimetype="text/html")

    @app.route("/api/v1/pair", methods=["POST"])
    def pair():
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or "code" not in body:
            raise ServeError("send JSON {\"code\": \"123456\", \"device\": \"a name\"}. Fix: see "
                             "docs/api/openapi.yaml", code="bad_request")
        token = store.redeem(body["code"], body.get("device"))
        device = store.authenticate(token)
        response = jsonify({"token": token, "device": device["device"], "expires": device["expires"],
                            "csrf_token": store.csrf_token(device["id"])})
        response.set_cookie(COOKIE, token, max_age=settings.token_seconds, secure=settings.tls, httponly=True,
                            samesite="Strict", path="/")
        return response

    @app.route("/api/v1/session")
    def session():
        return jsonify({"device": g.device["device"], "expires": g.device["expires"],
                        "csrf_token": store.csrf_token(g.device["id"])})

    @app.route("/api/v1/health")
    def health():
        return jsonify({"status": "ok", "version": __version__})

    @app.route("/api/v1/ready")
    def ready():
        is_ready, details = service.readiness()
        response = jsonify(dict(details, ready=is_ready))
        response.status_code = 200 if is_ready else 503
        return response

    @app.route("/api/v1/modules")
    def modules():
        return jsonify({"modules": service.describe_modules()})

    @app.route("/api/v1/classify", methods=["POST"])
    def classify():
        upload = request.files.get("image")
        data = upload.read() if upload is not None else b""
        result = service.classify(data, request.form.get("module"), g.device["id"])
        return jsonify(result)

    _register_case_routes(app, flask, service)


def _register_case_routes(app, flask, service):
    request, g, jsonify = flask.request, flask.g, flask.jsonify

    @app.route("/api/v1/cases", methods=["GET", "POST"])
    def cases():
        if request.method == "GET":
            return jsonify({"cases": service.cases()})
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not body.get("result_id"):
            raise ServeError("send JSON {\"result_id\": ...} from a classify response. Fix: see "
                             "docs/api/openapi.yaml", code="bad_request")
        response = jsonify(service.save(str(body["result_id"]), g.device["id"]))
        response.status_code = 201
        return response

    @app.route("/api/v1/cases/<case_id>")
    def case(case_id):
        summary, _image = service.case(case_id)
        return jsonify(summary)

    @app.route("/api/v1/cases/<case_id>/referral.pdf")
    def case_referral(case_id):
        response = flask.make_response(service.referral(case_id))
        response.headers["Content-Type"] = "application/pdf"
        response.headers["Content-Disposition"] = "attachment; filename=referral-{}.pdf".format(case_id)
        return response

    @app.route("/api/v1/cases/<case_id>/image")
    def case_image(case_id):
        _summary, image = service.case(case_id)
        return flask.send_file(image, mimetype="image/png")
