#!/usr/bin/env bash
# StationWatch — install the gateway agent on a Raspberry Pi (Raspberry Pi OS bookworm).
# 在树莓派（Raspberry Pi OS bookworm）上安装 StationWatch 网关代理。
#
#   sudo hardware/install-gateway.sh [--dry-run] [--root DIR] [--no-apt] [--boot-config FILE] [SRC]
#
# SRC is the StationWatch checkout to install (default: the checkout this script is in).
# Safe to run again: it changes only what is missing or out of date, never overwrites
# /etc/stationwatch/gateway.env, and is the way to update (git pull, then run it again).
# Steps and options: hardware/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
readonly UNIT=stationwatch-gateway.service
readonly SVC_USER=stationwatch
readonly SVC_GROUPS=(gpio spi dialout)
readonly VENV=/opt/stationwatch/venv
readonly PACKAGES=(python3-venv python3-lgpio python3-gpiozero git)

SRC=""
ROOT=""
DRY_RUN=0
APT=1
BOOT_CONFIG=""
REBOOT_NEEDED=0
ARGS="$*"

usage() {
    cat <<'EOF'
Usage: sudo install-gateway.sh [options] [SRC]

Installs the StationWatch gateway agent: Debian packages, SPI and 1-Wire, the user
`stationwatch`, a virtual environment in /opt/stationwatch/venv with the package from SRC,
the systemd unit, the udev rule for USB RS-485 adapters and /etc/stationwatch/gateway.env.

  SRC                 StationWatch checkout to pip-install (default: the one holding this script)
  --dry-run           print every change, make none (may be run without root)
  --root DIR          install the files under DIR instead of /, and skip everything that acts
                      on the running system (apt-get, users, raspi-config, venv, udevadm,
                      systemctl); for tests and for staging a mounted SD card
  --boot-config FILE  firmware config file (default: /boot/firmware/config.txt, else /boot/config.txt)
  --no-apt            do not run apt-get (packages installed beforehand, or no network)
  -h, --help          this text
EOF
}

die() { printf 'ERROR / 错误: %s\n' "$*" >&2; exit 1; }
warn() { printf 'WARNING / 警告: %s\n' "$*" >&2; }
step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

# Print a command, then run it unless this is a dry run.
run() {
    local quoted
    quoted=$(printf ' %q' "$@")
    if [ "$DRY_RUN" = 1 ]; then
        printf '    would run:%s\n' "$quoted"
        return 0
    fi
    printf '    +%s\n' "$quoted"
    "$@"
}

# A command that acts on the running system (not on files under --root): skipped with --root.
system_run() {
    if [ -n "$ROOT" ]; then
        printf '    skipped (--root):%s\n' "$(printf ' %q' "$@")"
        return 0
    fi
    run "$@"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --no-apt) APT=0 ;;
        --root)
            [ $# -ge 2 ] || die "--root needs a directory"
            ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --boot-config)
            [ $# -ge 2 ] || die "--boot-config needs a file"
            BOOT_CONFIG=$2; shift ;;
        --boot-config=*) BOOT_CONFIG=${1#--boot-config=} ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *)
            [ -z "$SRC" ] || die "only one SRC directory may be given"
            SRC=$1 ;;
    esac
    shift
done

if [ "$(id -u)" -ne 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then
        warn "not root: a dry run only; the real install needs: sudo $0 ${ARGS/--dry-run/}"
    else
        die "run as root: sudo $0 $ARGS   (--dry-run shows what would change)"
    fi
fi

if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: no such directory"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=""
fi
SRC=${SRC:-$HERE/..}
[ -f "$SRC/pyproject.toml" ] || die "$SRC is not a StationWatch checkout (no pyproject.toml); pass the checkout directory"
SRC=$(cd "$SRC" && pwd)

if [ -z "$BOOT_CONFIG" ]; then
    if [ -e "$ROOT/boot/firmware/config.txt" ] || [ ! -e "$ROOT/boot/config.txt" ]; then
        BOOT_CONFIG=/boot/firmware/config.txt
    else
        BOOT_CONFIG=/boot/config.txt    # bullseye and older
    fi
fi

# install_file SOURCE DEST MODE [keep]: copy SOURCE to ROOT/DEST; "keep" leaves an existing DEST alone.
# Sets CHANGED=1 when it wrote the file.
install_file() {
    local src=$1 dest=$ROOT$2 mode=$3 keep=${4:-}
    CHANGED=0
    if [ -e "$dest" ]; then
        if [ "$keep" = keep ]; then
            note "kept $dest (exists, not overwritten)"
            return 0
        fi
        if cmp -s "$src" "$dest"; then
            note "up to date: $dest"
            return 0
        fi
    fi
    run install -D -m "$mode" "$src" "$dest"
    CHANGED=1
}

# ensure_dir DIR MODE [OWNER:GROUP]: create ROOT/DIR with MODE; the owner is set only on the running system.
ensure_dir() {
    local dir=$ROOT$1 mode=$2 owner=${3:-}
    if [ -d "$dir" ] && [ "$(stat -c %a "$dir")" = "${mode#0}" ] \
        && { [ -z "$owner" ] || [ -n "$ROOT" ] || [ "$(stat -c %U:%G "$dir")" = "$owner" ]; }; then
        note "up to date: $dir"
        return 0
    fi
    run install -d -m "$mode" "$dir"
    if [ -n "$owner" ]; then
        system_run chown "$owner" "$dir"
    fi
}

# ---------------------------------------------------------------------------------------------
step "StationWatch gateway install / 安装网关 — source $SRC${ROOT:+, into $ROOT}$( [ "$DRY_RUN" = 1 ] && printf ' (dry run / 演练)')"
if [ -z "$ROOT" ] && [ -r /proc/device-tree/model ]; then
    note "machine: $(tr -d '\0' </proc/device-tree/model)"
elif [ -z "$ROOT" ]; then
    warn "this does not look like a Raspberry Pi (no /proc/device-tree/model); GPIO, SPI and 1-Wire will not work here"
fi

# ---------------------------------------------------------------------------------------------
step "1. Debian packages / 软件包: ${PACKAGES[*]}"
missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    note "all installed"
elif [ -n "$ROOT" ] || [ "$APT" = 0 ]; then
    if [ -n "$ROOT" ]; then why="--root"; else why="--no-apt"; fi
    note "skipped ($why); not installed here: ${missing[*]}"
else
    run env DEBIAN_FRONTEND=noninteractive apt-get update -q
    installable=()
    for pkg in "${missing[@]}"; do
        if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [^(]'; then
            installable+=("$pkg")
        elif [ "$DRY_RUN" = 1 ]; then
            installable+=("$pkg")   # the package lists were not refreshed; assume it will be found
        else
            warn "package $pkg is not available (it comes from the Raspberry Pi OS archive); without python3-lgpio the gateway cannot use GPIO"
        fi
    done
    if [ ${#installable[@]} -gt 0 ]; then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${installable[@]}"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "2. SPI (MCP3008) and 1-Wire on GPIO4 (DS18B20) / 启用 SPI 与 1-Wire"
if [ -z "$ROOT" ] && command -v raspi-config >/dev/null 2>&1; then
    run raspi-config nonint do_spi 0
    run raspi-config nonint do_onewire 0
    if [ ! -e /dev/spidev0.0 ] || [ ! -d /sys/bus/w1/devices ]; then
        REBOOT_NEEDED=1
    fi
else
    cfg=$ROOT$BOOT_CONFIG
    if [ ! -e "$cfg" ] && [ -z "$ROOT" ]; then
        warn "neither raspi-config nor $cfg found: not Raspberry Pi OS? Enable SPI and the w1-gpio overlay on GPIO4 yourself"
    else
        lines=()
        if [ -e "$cfg" ] && grep -Eq '^[[:space:]]*dtparam=spi=on([[:space:]]|$)' "$cfg"; then
            note "already in $cfg: dtparam=spi=on"
        else
            lines+=("dtparam=spi=on")
        fi
        if [ -e "$cfg" ] && grep -Eq '^[[:space:]]*dtoverlay=w1-gpio(,|[[:space:]]|$)' "$cfg"; then
            note "already in $cfg: $(grep -E '^[[:space:]]*dtoverlay=w1-gpio' "$cfg" | head -n 1)"
            if grep -E '^[[:space:]]*dtoverlay=w1-gpio' "$cfg" | grep -Eq 'gpiopin=([0-35-9]|[0-9]{2})'; then
                warn "$cfg puts 1-Wire on another pin than GPIO4; hardware/wiring.md assumes GPIO4"
            fi
        else
            lines+=("dtoverlay=w1-gpio")
        fi
        if [ ${#lines[@]} -gt 0 ]; then
            [ -e "$cfg" ] || note "$cfg does not exist; it will be created"
            if [ "$DRY_RUN" = 1 ]; then
                note "would append to $cfg: [all] ${lines[*]}"
            else
                mkdir -p "$(dirname "$cfg")"
                {
                    printf '\n# StationWatch: SPI0 for the MCP3008, 1-Wire on GPIO4 for DS18B20 probes\n[all]\n'
                    printf '%s\n' "${lines[@]}"
                } >>"$cfg"
                note "appended to $cfg: ${lines[*]}"
            fi
            REBOOT_NEEDED=1
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
step "3. User $SVC_USER, groups ${SVC_GROUPS[*]} / 服务用户"
if [ -n "$ROOT" ]; then
    note "skipped (--root): the user is created when this script runs on the gateway itself"
else
    for group in "${SVC_GROUPS[@]}"; do
        getent group "$group" >/dev/null || run groupadd --system "$group"
    done
    if id "$SVC_USER" >/dev/null 2>&1; then
        note "user $SVC_USER exists"
    else
        if getent group "$SVC_USER" >/dev/null; then group_opt=(--gid "$SVC_USER"); else group_opt=(--user-group); fi
        run useradd --system "${group_opt[@]}" --home-dir /var/lib/stationwatch --no-create-home \
            --shell /usr/sbin/nologin --comment "StationWatch gateway" "$SVC_USER"
    fi
    want=$(IFS=,; printf '%s' "${SVC_GROUPS[*]}")
    have=$(id -nG "$SVC_USER" 2>/dev/null || true)
    for group in "${SVC_GROUPS[@]}"; do
        case " $have " in
            *" $group "*) ;;
            *) run usermod -a -G "$want" "$SVC_USER"; break ;;
        esac
    done
fi

# ---------------------------------------------------------------------------------------------
step "4. Directories / 目录"
ensure_dir /etc/stationwatch 0750 "root:$SVC_USER"
ensure_dir /var/lib/stationwatch 0750 "$SVC_USER:$SVC_USER"
ensure_dir /opt/stationwatch 0755

# ---------------------------------------------------------------------------------------------
step "5. Virtual environment $VENV and the package / 虚拟环境与程序包"
if [ -n "$ROOT" ]; then
    note "skipped (--root): a venv only works on the machine that built it"
else
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        die "StationWatch needs Python 3.11 or newer (Raspberry Pi OS bookworm has 3.11); found: $(python3 --version 2>&1 || echo none)"
    fi
    if [ -x "$VENV/bin/python" ]; then
        note "venv exists"
    else
        # --system-site-packages: lgpio and gpiozero come from Raspberry Pi OS (apt), built for this board.
        run python3 -m venv --system-site-packages "$VENV"
    fi
    # pip builds in the source tree (build/, *.egg-info); build from a clean copy so the
    # checkout is left as it was, without root-owned files in it.
    if [ "$DRY_RUN" = 1 ]; then
        note "would copy $SRC (without .git, .venv and build output) to a temporary directory and run:"
        note "  $VENV/bin/pip install --upgrade <that copy>"
    else
        stage=$(mktemp -d)
        trap 'rm -rf "$stage"' EXIT
        tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./.demo \
            --exclude='*.egg-info' --exclude=__pycache__ --exclude=.pytest_cache -cf - . | tar -C "$stage" -xf -
        run "$VENV/bin/pip" install --disable-pip-version-check --root-user-action=ignore --upgrade "$stage"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "6. systemd unit, udev rule, settings / 服务单元、udev 规则、运行参数"
install_file "$HERE/systemd/$UNIT" "/etc/systemd/system/$UNIT" 0644
install_file "$HERE/udev/99-stationwatch-rs485.rules" /etc/udev/rules.d/99-stationwatch-rs485.rules 0644
udev_changed=$CHANGED
# Holds the MQTT password (STATIONWATCH_BROKER_PASSWORD, handed to the agent in its environment,
# not on its command line): root only (systemd reads it as root before dropping privileges).
install_file "$HERE/systemd/stationwatch-gateway.env.example" /etc/stationwatch/gateway.env 0600 keep

# ---------------------------------------------------------------------------------------------
step "7. Reload udev and systemd, enable the service / 启用服务"
if [ -n "$ROOT" ]; then
    note "skipped (--root): run this script on the gateway to enable $UNIT"
else
    if [ "$udev_changed" = 1 ] || [ "$DRY_RUN" = 1 ]; then
        if [ -S /run/udev/control ]; then
            run udevadm control --reload
            run udevadm trigger --subsystem-match=tty --action=add
        else
            note "udev is not running here; the rule takes effect at the next boot"
        fi
    fi
    if [ -d /run/systemd/system ]; then
        run systemctl daemon-reload
        if systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
            note "$UNIT already enabled"
        else
            run systemctl enable "$UNIT"
        fi
        if systemctl is-active --quiet "$UNIT" 2>/dev/null; then
            # A running agent picks up the new package or unit only when restarted.
            run systemctl restart "$UNIT"
        fi
    else
        note "systemd is not running here (chroot or container)"
        run systemctl enable "$UNIT"
    fi
fi

# ---------------------------------------------------------------------------------------------
step "Done / 完成$( [ "$DRY_RUN" = 1 ] && printf ' (dry run: nothing was changed / 演练：未做任何改动)')"
todo=()
[ -e "$ROOT/etc/stationwatch/station.yaml" ] || \
    todo+=("copy the organisation config to /etc/stationwatch/station.yaml (chgrp $SVC_USER, chmod 0640) / 拷贝组织配置")
[ -e "$ROOT/etc/stationwatch/ca.crt" ] || \
    todo+=("copy the deployment CA certificate to /etc/stationwatch/ca.crt / 拷贝 CA 证书")
if [ ! -e "$ROOT/etc/stationwatch/gateway.env" ] || grep -q 'CHANGE-ME' "$ROOT/etc/stationwatch/gateway.env"; then
    todo+=("set STATIONWATCH_GATEWAY, STATIONWATCH_BROKER (host and port only) and STATIONWATCH_BROKER_PASSWORD in /etc/stationwatch/gateway.env / 填写网关编号、服务器地址与密码")
fi
# An older gateway.env put the password into the URL, which shows in ps and the journal.
if [ -e "$ROOT/etc/stationwatch/gateway.env" ] && grep -Eq '^STATIONWATCH_BROKER=([^/]*//)?[^/@]*@' "$ROOT/etc/stationwatch/gateway.env"; then
    todo+=("move the password out of STATIONWATCH_BROKER (mqtts://host:8883) into STATIONWATCH_BROKER_PASSWORD in /etc/stationwatch/gateway.env: the URL shows in ps / 密码不要写在服务器地址里，改用 STATIONWATCH_BROKER_PASSWORD")
fi
todo+=("check: $VENV/bin/stationwatch check-config /etc/stationwatch/station.yaml")
if [ "$REBOOT_NEEDED" = 1 ]; then
    todo+=("reboot, so SPI and 1-Wire come up; the service starts by itself / 重启以启用 SPI 与 1-Wire")
else
    todo+=("start: systemctl restart $UNIT")
fi
todo+=("watch: journalctl -u $UNIT -f")
n=1
for item in "${todo[@]}"; do
    printf '    %d. %s\n' "$n" "$item"
    n=$((n + 1))
done
