#!/usr/bin/env bash
# Make this machine ready to run gatescan from the source tree: system packages (apt), a
# virtualenv, and the package with its extras. Idempotent: a second run installs nothing.
# Usage: deploy/dev/bootstrap.sh [VENV_DIR] [EXTRAS]
set -euo pipefail

venv=${1:-.venv}
extras=${2:-device,fast,server,web,postgres,demo,dev}
apt_packages=(mosquitto libzbar0 chromium systemd caddy cloud-init postgresql fonts-dejavu-core
    poppler-utils)

have_lib() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }
have_cmd() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 ]]; }

missing=()
have_cmd mosquitto || missing+=(mosquitto)
have_lib libzbar.so.0 || missing+=(libzbar0)
# The dashboard's browser tests drive the distribution's chromium through Playwright.
have_cmd chromium || missing+=(chromium)
# tests/deploy/test_units.py scores and verifies the shipped units with systemd's own analyzer
# (a container image may lack systemd), and tests/deploy/test_proxy.py parses the shipped
# Caddyfile with Caddy's.
have_cmd systemd-analyze || missing+=(systemd)
have_cmd caddy || missing+=(caddy)
# tests/server/provision/ checks the user-data `gatescan provision` writes with cloud-init's own
# `cloud-init schema` (it runs without a booted cloud-init, as any user).
have_cmd cloud-init || missing+=(cloud-init)
# The store's tests run on SQLite and on a PostgreSQL they start themselves from Debian's server
# binaries (tests/support/postgres.py: initdb into a temp folder); no system cluster is needed.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
# The PDF check-in posters embed DejaVu Sans (its Vietnamese glyphs): server/locations/posters.py
# reads it from where this package puts it.
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || missing+=(fonts-dejavu-core)
# tests/server/locations/ render a PDF poster with pdftoppm and read its text with pdftotext.
have_cmd pdftoppm || missing+=(poppler-utils)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)

if ((${#missing[@]})); then
    echo "bootstrap: installing system packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    if [[ " ${missing[*]} " == *" cloud-init "* ]]; then
        # Installed here for its schema check only: it must never configure this machine at
        # boot (the package enables its units; this file, made first, is cloud-init's own off
        # switch).
        $sudo mkdir -p /etc/cloud
        $sudo touch /etc/cloud/cloud-init.disabled
    fi
    if [[ " ${missing[*]} " == *" postgresql "* ]]; then
        # Only the binaries are wanted: postgresql-common's own switch keeps the package from
        # making (and starting) a "main" cluster as a system service.
        conf=/etc/postgresql-common/createcluster.conf
        $sudo mkdir -p /etc/postgresql-common
        grep -qs '^create_main_cluster' "$conf" ||
            echo "create_main_cluster = false" | $sudo tee -a "$conf" >/dev/null
    fi
    # --force-confold: keep a config file made above (createcluster.conf) without asking.
    $sudo apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
fi

python3 - <<'PY' || { echo "bootstrap: gatescan needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

stamp="$venv/.gatescan-installed"
if [[ ! -x $venv/bin/python ]]; then
    echo "bootstrap: creating virtualenv $venv"
    python3 -m venv "$venv"
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp || $(cat "$stamp") != "$extras" ]]; then
    echo "bootstrap: installing gatescan[$extras] into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e ".[$extras]"
    echo "$extras" > "$stamp"
fi
