"""Capture mode's photos onto the unit's USB stick: E in capture mode and ``medkiosk capture export
--usb``, through the same root helper and with the same guarantees as the case export (key E,
``edge.usb_export``).

The stick is mounted read-only and the kiosk is unprivileged, so: the export (class folders,
``capture.csv``, ``README.txt``; folders 0700, files 0600) is first written complete into the outbox
on the unit's own disk (temporary folder, fsync, rename), then ``EXPORT medkiosk-capture-<module>-<time>``
asks the root helper to remount the stick read-write, copy it into a hidden folder, sync, rename,
sync and remount read-only. Only after its ``OK`` are the photos recorded as exported (the capture
index, one atomic write), which is what ``medkiosk capture purge --exported`` deletes; on any failure
nothing is on the stick and nothing is recorded. Every failure is one UsbExportError or CaptureError
line with its fix. The outbox is held for the whole export (``UsbExporter.locked``): an export of
cases (key E) started meanwhile is refused, never clears this one's staged folder.
"""

import errno
import os
import re

from edge.capture import EXPORT_PREFIX, CaptureError
from edge.i18n import N_, _
from edge.usb_export import UsbExportError

PHOTOS_SAFE = N_("Safe to remove the USB stick - {} photo(s) exported to {}")
NO_PHOTOS = N_("No photos to export")
# A module id the root helper accepts in a folder name (its CAPTURE_PATTERN).
HELPER_MODULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Room the outbox needs beyond the photos: capture.csv, README.txt and the folders, with margin.
LIST_ALLOWANCE_BYTES = 1024 * 1024
PER_PHOTO_ALLOWANCE_BYTES = 4096


class PhotosExported(object):
    """What one export did: how many photos, the folder name on the stick (None: no photos)."""

    def __init__(self, count, name):
        self.count = count
        self.name = name

    def message(self):
        if not self.count:
            return _(NO_PHOTOS)
        return _(PHOTOS_SAFE).format(self.count, self.name)


def _prepare(exporter, records):
    """Clear capture leftovers from the outbox and check the unit's disk has room for the copy."""
    needed = LIST_ALLOWANCE_BYTES + sum(os.path.getsize(r["path"]) + PER_PHOTO_ALLOWANCE_BYTES
                                        for r in records)
    try:
        exporter.clear_outbox(EXPORT_PREFIX)
        exporter.check_room(needed)
    except OSError as exc:
        raise UsbExportError("cannot prepare the export in {} ({}). Fix: check free space on the "
                             "unit".format(exporter.outbox, exc.strerror)) from exc


def export_usb(store, exporter, labels=(), now=None):
    """Every photo of ``store`` (an open edge.capture.CaptureStore) onto the stick through ``exporter``
    (an edge.usb_export.UsbExporter: its outbox and trigger); return PhotosExported. Raises
    UsbExportError (the stick, the helper, the unit's disk) or CaptureError (a photo changed)."""
    if not HELPER_MODULE.match(store.module):
        raise CaptureError("capture module {!r} cannot name a folder on the USB stick. Fix: set [capture] "
                           "module to letters, digits, . _ - only (e.g. skin)".format(store.module))
    records = store.records()
    if not records:
        return PhotosExported(0, None)
    with exporter.locked():  # one export per outbox at a time: the kiosk's E or this command
        return _stage_and_send(store, exporter, records, labels, now)


def _stage_and_send(store, exporter, records, labels, now):
    """With the outbox held: the export written complete into it, sent to the stick, then recorded."""
    _prepare(exporter, records)
    staged = store.publish(
        exporter.outbox, records, labels, now,
        refused=lambda exc: UsbExportError("cannot prepare the export in {} ({}). Fix: check free space on "
                                           "the unit".format(exporter.outbox, exc.strerror)),
        failed=lambda exc: UsbExportError("the export could not be written on the unit ({}); nothing was "
                                          "exported. Fix: check free space on the unit".format(exc.strerror),
                                          code="unit-full" if exc.errno == errno.ENOSPC else "failed"))
    name = exporter.send(staged)
    try:
        store.mark_exported(records, name, now=now)
    except OSError as exc:
        raise CaptureError("the photos are on the USB stick ({}) but could not be recorded as exported ({}); "
                           "they stay on the unit. Fix: free space on the unit, then export again".format(
                               name, exc.strerror)) from exc
    return PhotosExported(len(records), name)
