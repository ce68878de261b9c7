#!/bin/sh
# Serve on the container's own address (the config refuses 0.0.0.0); other commands pass through,
# e.g. `docker exec medkiosk medkiosk serve pair`.
set -eu
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
address=$(hostname -i | cut -d' ' -f1)
exec medkiosk serve --config /etc/medkiosk/medkiosk.conf --bind "$address"
