"""medkiosk on-device runtime: bundles, backends, sources, the kiosk loop and the case log.

Runs on the Jetson: Python 3.6 compatible, never imports torch.
"""

__version__ = "0.1.0"
