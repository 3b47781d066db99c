#!/bin/sh
# Make sure a PostgreSQL server answers at 127.0.0.1:5432 for the tests of the shared alert store
# (tests/support/postgres.py). Already answering: nothing to do. Otherwise, as root (or with
# password-less sudo): install Debian's postgresql (apt-install.sh), start its cluster — creating one
# if there is none, trusting local TCP connections of the postgres user, for the tests — and wait.
# Without root the PostgreSQL tests are skipped, and say why.
set -e
ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
command -v pg_isready >/dev/null 2>&1 && ready && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
    echo "PostgreSQL: nothing answers at 127.0.0.1:5432 and installing it needs root;" \
         "the PostgreSQL store tests will be skipped (run make test as root, or start a server there)" >&2
    exit 0
fi
PKGS="pg_ctlcluster:postgresql pg_isready:postgresql-client" sh "$(dirname "$0")/apt-install.sh"
cluster=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 { print $1 " " $2; exit }')
if [ -z "$cluster" ]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -n | tail -1)
    $SUDO pg_createcluster --port 5432 "$version" main >/dev/null
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    # a cluster made here for the tests: the postgres user may connect over 127.0.0.1 without a password
    $SUDO sed -i '1i host all postgres 127.0.0.1/32 trust' "$hba"
    cluster="$version main"
fi
# shellcheck disable=SC2086 # "version name", two words
$SUDO pg_ctlcluster $cluster start 2>/dev/null || true
i=0
until ready; do
    i=$((i + 1))
    if [ "$i" -gt 30 ]; then
        echo "PostgreSQL cluster $cluster did not answer at 127.0.0.1:5432 within 30 s" >&2
        exit 1
    fi
    sleep 1
done
echo "PostgreSQL $cluster answering at 127.0.0.1:5432"
