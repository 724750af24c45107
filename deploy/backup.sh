#!/usr/bin/env bash
# Nekassir database backup: pg_dump (custom format, compressed) of DATABASE_URL into BACKUP_DIR, one file
# a day; keeps the last KEEP_DAILY daily files and the first dump of each of the last KEEP_MONTHLY months.
# Run by nekassir-backup.timer; restore with: pg_restore --clean --if-exists -d "$DATABASE_URL" FILE
set -euo pipefail
: "${DATABASE_URL:?DATABASE_URL is not set}"
BACKUP_DIR="${BACKUP_DIR:-/var/backups/nekassir}"
KEEP_DAILY="${KEEP_DAILY:-14}"
KEEP_MONTHLY="${KEEP_MONTHLY:-24}"
umask 077
mkdir -p "$BACKUP_DIR/daily" "$BACKUP_DIR/monthly"
stamp="$(date +%Y-%m-%d)"
tmp="$BACKUP_DIR/daily/.nekassir-$stamp.dump.partial"
pg_dump --format=custom --compress=6 --no-owner --file="$tmp" "$DATABASE_URL"
pg_restore --list "$tmp" > /dev/null  # the dump is readable
mv "$tmp" "$BACKUP_DIR/daily/nekassir-$stamp.dump"
month="$(date +%Y-%m)"
if ! ls "$BACKUP_DIR/monthly/nekassir-$month-"*.dump > /dev/null 2>&1; then
    cp "$BACKUP_DIR/daily/nekassir-$stamp.dump" "$BACKUP_DIR/monthly/nekassir-$stamp.dump"
fi
ls -1t "$BACKUP_DIR"/daily/nekassir-*.dump | tail -n +"$((KEEP_DAILY + 1))" | xargs -r rm --
ls -1t "$BACKUP_DIR"/monthly/nekassir-*.dump | tail -n +"$((KEEP_MONTHLY + 1))" | xargs -r rm --
echo "backup: $BACKUP_DIR/daily/nekassir-$stamp.dump ($(du -h "$BACKUP_DIR/daily/nekassir-$stamp.dump" | cut -f1))"
