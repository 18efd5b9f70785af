#!/usr/bin/env bash
# Install the TimescaleDB extension (Apache-2 edition) into PostgreSQL 15.
#
# Builds Debian trixie's `timescaledb` source package against the local
# PostgreSQL 15 server headers (bookworm ships no timescaledb package) and
# installs it into /usr/lib/postgresql/15/lib + /usr/share/postgresql/15/extension.
#
# Idempotent: exits 0 immediately when the extension is already installed.
# Must run as root (CI runs as root). Non-interactive. See docs/timescaledb.md.
#
# Environment overrides (optional):
#   TIMESCALEDB_SOURCE_SUITE  Debian suite to take the source from (default: trixie)
#   TIMESCALEDB_FORCE=1       rebuild/reinstall even if already installed
set -euo pipefail

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
EXT_DIR="/usr/share/postgresql/${PG_MAJOR}/extension"
LIB_DIR="/usr/lib/postgresql/${PG_MAJOR}/lib"
CONTROL="${EXT_DIR}/timescaledb.control"
SUITE="${TIMESCALEDB_SOURCE_SUITE:-trixie}"
SRC_LIST="/etc/apt/sources.list.d/timescaledb-${SUITE}-src.list"

log() { printf '[install-timescaledb] %s\n' "$*"; }
die() { printf '[install-timescaledb] ERROR: %s\n' "$*" >&2; exit 1; }

installed_version() {
    # default_version = '2.19.3'
    sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" "$CONTROL" 2>/dev/null | head -n1
}

is_installed() {
    local v
    [ -f "$CONTROL" ] || return 1
    [ -f "${LIB_DIR}/timescaledb.so" ] || return 1
    v="$(installed_version)"
    [ -n "$v" ] && [ -f "${LIB_DIR}/timescaledb-${v}.so" ]
}

# ---- fast no-op path -------------------------------------------------------
if [ "${TIMESCALEDB_FORCE:-0}" != "1" ] && is_installed; then
    echo "timescaledb already installed: $(installed_version)"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    die "must be run as root (it installs apt packages and writes to ${LIB_DIR}); try: sudo bash $0"
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-qq -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false)

WORKDIR="$(mktemp -d /tmp/timescaledb-build.XXXXXX)"
cleanup() {
    rm -rf "$WORKDIR"
    # The deb-src entry is only needed to fetch the source; don't leave an
    # extra suite behind that every later `apt-get update` would download.
    rm -f "$SRC_LIST"
}
trap cleanup EXIT

# ---- find the Debian mirror actually configured on this machine ------------
# Only the configured mirrors are reachable, so reuse that host.
detect_mirror() {
    local f uri=""
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        [ "$f" = "$SRC_LIST" ] && continue
        # ignore comments; take the first URI whose path ends in /debian
        uri="$(sed 's/#.*//' "$f" | tr -s ' \t' '\n\n' \
               | grep -E '^(https?|ftp)://[^[:space:]]+/debian/?$' | head -n1 || true)"
        [ -n "$uri" ] && break
    done
    printf '%s\n' "${uri%/}"
}
MIRROR="$(detect_mirror)"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

# deb-src ONLY: source indices never affect which binary packages apt installs,
# so bookworm's `apt-get install` keeps resolving to bookworm binaries.
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
if [ -f "$KEYRING" ]; then
    echo "deb-src [signed-by=${KEYRING}] ${MIRROR} ${SUITE} main" > "$SRC_LIST"
else
    echo "deb-src ${MIRROR} ${SUITE} main" > "$SRC_LIST"
fi
log "using ${SUITE} sources from ${MIRROR}"

log "apt-get update"
apt-get "${APT_OPTS[@]}" update

# ---- build dependencies (all from bookworm) --------------------------------
# If the server is already installed, take the headers of the same version
# when the mirror still has it, so that installing them does not drag
# postgresql-15 / postgresql-client-15 to a newer minor release as a side
# effect (headers of any 15.x would work: the extension ABI is per major).
DEV_PKG="postgresql-server-dev-${PG_MAJOR}"
SERVER_VER="$(dpkg-query -W -f='${Version}' "postgresql-${PG_MAJOR}" 2>/dev/null || true)"
if [ -n "$SERVER_VER" ] && apt-cache madison "$DEV_PKG" 2>/dev/null \
        | awk -F'|' '{gsub(/ /,"",$2); print $2}' | grep -qxF "$SERVER_VER"; then
    DEV_PKG="${DEV_PKG}=${SERVER_VER}"
fi
PKGS=("$DEV_PKG" cmake build-essential dpkg-dev libssl-dev)
if [ ! -x "${PG_BIN}/postgres" ]; then
    PKGS+=(postgresql-${PG_MAJOR} postgresql-client-${PG_MAJOR})
fi
log "apt-get install ${PKGS[*]}"
if ! apt-get "${APT_OPTS[@]}" install "${PKGS[@]}" >"$WORKDIR/apt.log" 2>&1; then
    cat "$WORKDIR/apt.log" >&2
    die "apt-get install failed"
fi

[ -x "$PG_CONFIG" ] || die "$PG_CONFIG not found after installing postgresql-server-dev-${PG_MAJOR}"
[ -x "${PG_BIN}/postgres" ] || die "${PG_BIN}/postgres not found after installing postgresql-${PG_MAJOR}"

# ---- fetch + build ---------------------------------------------------------
cd "$WORKDIR"
log "apt-get source timescaledb (${SUITE})"
# _apt must be able to write the download dir, else apt warns about an
# unsandboxed download as root.
chown _apt "$WORKDIR" 2>/dev/null || true
if ! apt-get -qq source "timescaledb/${SUITE}" >"$WORKDIR/source.log" 2>&1; then
    cat "$WORKDIR/source.log" >&2
    die "apt-get source timescaledb/${SUITE} failed"
fi
SRC_DIR="$(find "$WORKDIR" -mindepth 1 -maxdepth 1 -type d -name 'timescaledb-*' | head -n1)"
[ -n "$SRC_DIR" ] || die "source tree not found in $WORKDIR"
log "building $(basename "$SRC_DIR") (Apache-2 edition) against $("$PG_CONFIG" --version)"

BUILD_LOG="$WORKDIR/build.log"
if ! {
    cmake -S "$SRC_DIR" -B "$WORKDIR/build" \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DPG_CONFIG="$PG_CONFIG" \
        -DAPACHE_ONLY=ON \
        -DREGRESS_CHECKS=OFF \
        -DTAP_CHECKS=OFF \
        -DWARNINGS_AS_ERRORS=OFF \
        -DLINTER=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF \
    && make -C "$WORKDIR/build" -j"$(nproc)" \
    && make -C "$WORKDIR/build" install
} >"$BUILD_LOG" 2>&1; then
    tail -n 60 "$BUILD_LOG" >&2
    die "build failed (last 60 lines of the build log above)"
fi

cd /
is_installed || die "build finished but ${CONTROL} / ${LIB_DIR}/timescaledb*.so are missing"
log "installed timescaledb $(installed_version) (license: apache) for PostgreSQL ${PG_MAJOR}"
echo "timescaledb installed: $(installed_version)"
