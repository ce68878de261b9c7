"""The [serve] section of the config, checked beyond its types: the bind address and client networks."""

import ipaddress

from edge.errors import ConfigError


def _address(text):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise ConfigError("config [serve] bind: {!r} is not an IP address. Fix: set bind = this unit's LAN "
                          "address (e.g. 192.168.4.1) or 127.0.0.1".format(text)) from None


def _networks(text):
    networks = []
    for part in [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]:
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError("config [serve] allow: {!r} is not a network. Fix: list networks such as "
                              "192.168.0.0/16, comma separated".format(part)) from None
        if not (network.is_private or network.is_loopback or network.is_link_local):
            raise ConfigError("config [serve] allow: {} is not a local network range. Fix: allow only "
                              "private, loopback or link-local ranges (10/8, 172.16/12, 192.168/16, "
                              "127/8)".format(network))
        networks.append(network)
    if not networks:
        raise ConfigError("config [serve] allow: no network listed. Fix: e.g. allow = 192.168.0.0/16")
    return networks


class ServeSettings(object):
    """Validated [serve] values plus what the service needs from [kiosk] and [quality]."""

    def __init__(self, config):
        serve = config.section("serve")
        kiosk = config.section("kiosk")
        self.enabled = serve["enabled"]
        self.bind = _address(serve["bind"])
        if self.bind.is_unspecified:
            raise ConfigError("config [serve] bind: {} listens on every interface. Fix: set bind = the "
                              "address of the one interface to serve (e.g. 192.168.4.1)".format(self.bind))
        self.port = serve["port"]
        self.allow = _networks(serve["allow"])
        self.tls = serve["tls"]
        self.tls_dir = serve["tls_dir"]
        self.max_upload_bytes = serve["max_upload_mb"] * 1024 * 1024
        self.max_pixels = serve["max_pixels"]
        self.rate_per_minute = serve["rate_per_minute"]
        self.pair_seconds = serve["pair_minutes"] * 60
        self.token_seconds = serve["token_days"] * 86400
        self.http_threads = serve["http_threads"]
        self.cpu_threads = serve["cpu_threads"]
        self.models_dir = kiosk["models_dir"]
        self.modules = list(kiosk["modules"])
        self.state_dir = kiosk["state_dir"]
        self.min_free_mb = kiosk["min_free_mb"]
        self.backend = kiosk["backend"]
        self.precision = kiosk["precision"]
        self.engine_cache = kiosk["engine_cache"]
        self.quality = config.section("quality")

    def allows(self, address):
        """True when a client address is inside one of the allowed networks."""
        try:
            client = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(client in network for network in self.allow)

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    @property
    def url(self):
        host = str(self.bind) if self.bind.version == 4 else "[{}]".format(self.bind)
        return "{}://{}:{}/".format(self.scheme, host, self.port)
