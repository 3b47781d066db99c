#!/bin/sh
# Install the Debian packages named in $PKGS ("command:package" pairs) whose command is missing;
# a "command" that starts with / is a file the package installs (a font).
# Uses apt-get directly as root, password-less sudo otherwise; else says what to run.
set -e
missing=""
for pair in $PKGS; do
    cmd=${pair%%:*}; pkg=${pair#*:}
    case $cmd in /*) [ -e "$cmd" ] && continue ;; esac
    if [ "$cmd" = "_" ] || ! { command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ]; }; then
        missing="$missing $pkg"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
    echo "StationWatch needs Debian packages:$missing" >&2
    echo "run: sudo apt-get install$missing   (or run make as root)" >&2
    exit 1
fi
echo "installing Debian packages:$missing"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# policy-rc.d: the packages' own services are not started; StationWatch starts its own instances.
$SUDO env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends $missing
