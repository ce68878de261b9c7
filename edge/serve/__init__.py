"""``medkiosk serve``: the kiosk's answer on the clinic's local network (JSON API + a web page).

Off by default ([serve] enabled = no). Same bundles, classifier, input checks and case log as the
screen (``edge.serve.service``); pairing, tokens, rate limits and TLS in ``edge.serve.auth``,
``edge.serve.ratelimit`` and ``edge.serve.tls``; the HTTP layer in ``edge.serve.app`` (Flask) run by
``edge.serve.server`` (cheroot, which terminates TLS itself).
"""
