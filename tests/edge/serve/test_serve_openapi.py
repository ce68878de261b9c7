"""docs/api/openapi.yaml documents exactly the routes the app serves, with their methods."""

import os
import re

import pytest

yaml = pytest.importorskip("yaml", reason="pip install pyyaml")
pytest.importorskip("flask", reason="pip install 'medkiosk[serve]'")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def test_openapi_lists_every_api_route_and_method():
    from edge.config import load_config
    from edge.serve.app import create_app
    from edge.serve.settings import ServeSettings

    settings = ServeSettings(load_config(os.path.join(ROOT, "config", "medkiosk.conf")))
    app = create_app(service=None, store=None, limiter=None, settings=settings)
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served.update((path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"})
    with open(os.path.join(ROOT, "docs", "api", "openapi.yaml")) as handle:
        spec = yaml.safe_load(handle)
    documented = {(path, method) for path, item in spec["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    assert documented == served
    assert spec["openapi"].startswith("3.") and all(path.startswith("/api/v1/") for path, _m in served)
    assert spec["paths"]["/api/v1/pair"]["post"]["security"] == []
