"""P on the kiosk: pair a phone or laptop with the LAN service (``medkiosk serve``) from the screen.

The kiosk and the service are two units; the kiosk has no network at all (PrivateNetwork=yes), so
they share the pairing through the service's own store (edge.serve.auth.DeviceStore) in the state
directory both run in as the same user: P makes a fresh code there (only its SHA-256 is written,
0600, atomically; any earlier code is void), the screen shows the plain code and its QR code from
memory, and the service redeems it. Expiry, the five-try lockout and one device per code are the
store's, as for ``medkiosk serve pair``. The panel shows what became of the code (paired, expired,
used up) for a few seconds, then closes; P again closes it at once and voids a code still pending.

P works for whoever has a USB keyboard at the unit, so it is a technician's switch, off unless
``[serve] pairing_key = on``: off, P only says "Pairing is switched off (technician)" (no code is
made) and the technician box says so; ``medkiosk serve pair`` on the unit's console still pairs.
"""

import time

from edge.console import printable
from edge.errors import MedkioskError
from edge.i18n import N_, _
from edge.pairing_view import PairingView

POLL_S = 1.0  # how often the store is asked what became of the code
LINGER_S = 8.0  # how long the outcome (paired, expired, used) stays on screen
SERVE_OFF = N_("Pairing: the LAN service is off. Fix: [serve] enabled = yes in the config (docs/serve.md)")
KEY_OFF = N_("Pairing is switched off (technician)")
# The technician box's "LAN pairing:" line when the key is off (on, it shows the page's address).
KEY_OFF_DETAIL = N_("key P off ([serve] pairing_key = off); on the console: medkiosk serve pair")


class Pairing(object):
    """The pairing code shown on the kiosk, if any.

    ``store``: the service's DeviceStore; ``base_url``: the page's address (ServeSettings.url);
    ``key_off``: the technician switched P off (``[serve] pairing_key = off``).
    """

    def __init__(self, store=None, base_url=None, problem=None, clock=time.time, key_off=False):
        self.store = store
        self.base_url = base_url
        self.key_off = bool(key_off)
        # why pairing is not available here: shown when P is pressed, and in the technician box
        self.problem = _(KEY_OFF_DETAIL) if self.key_off else problem
        self.clock = clock
        self.view = None
        self._issued = None
        self._polled = 0.0
        self._ended_at = None

    @property
    def available(self):
        return self.store is not None and self.problem is None

    def toggle(self):
        """P: show a fresh code, or close the panel (voiding a code still pending); a message or None."""
        if self.view is not None:
            self.close()
            return None
        if self.key_off:
            return _(KEY_OFF)
        if not self.available:
            return self.problem or _(SERVE_OFF)
        try:
            code, expires = self.store.new_code()
        except MedkioskError as exc:
            return _("Pairing failed: {}").format(exc)
        self._issued = self.clock()
        self._polled, self._ended_at = self._issued, None
        self.view = PairingView(code, self.base_url, expires)
        return None

    def close(self):
        view, self.view = self.view, None
        if view is not None and view.status == "active":
            self.store.cancel_code(view.code)

    def current(self):
        """The PairingView to draw now (its status refreshed at most every POLL_S), or None."""
        view = self.view
        if view is None:
            return None
        now = self.clock()
        if view.status == "active" and now - self._polled >= POLL_S:
            self._polled = now
            self._refresh(view, now)
        if view.status != "active":
            self._ended_at = self._ended_at or now
            if now - self._ended_at >= LINGER_S:
                self.view = None
        return self.view

    def _refresh(self, view, now):
        status = "expired" if now > view.expires else self.store.code_status(view.code)
        if status == "ended":
            device = self._paired_device()
            if device is not None:
                status, view.device = "paired", device
        view.status = status

    def _paired_device(self):
        """The name of a device paired since this code was issued, or None (the code was voided)."""
        since = int(self._issued)
        paired = [d for d in self.store.devices() if d["created"] >= since]
        return printable(max(paired, key=lambda d: d["created"])["device"]) if paired else None


def pairing_from_config(config):
    """The kiosk's Pairing from the config's [serve] section (not available when the service is off
    or the technician switched key P off)."""
    from edge.serve.auth import DeviceStore
    from edge.serve.settings import ServeSettings

    serve = config.section("serve")
    if not serve["pairing_key"]:
        return Pairing(key_off=True)
    if not serve["enabled"]:
        return Pairing(problem=_(SERVE_OFF))
    try:
        settings = ServeSettings(config)
    except MedkioskError as exc:
        return Pairing(problem=_("Pairing: {}").format(exc))
    store = DeviceStore(settings.state_dir, settings.pair_seconds, settings.token_seconds)
    return Pairing(store, settings.url)
