#!/usr/bin/env bash
# Cross-compile ferry for Raspberry Pi class boards, smoke-test every binary under
# qemu-user, and package the .debs. One command, on a Debian 12 (bookworm) x86_64 machine:
#
#   bash cross/build.sh TARGET|BOARD|all [--no-smoke] [--no-deb]
#   bash cross/build.sh install            # only install the toolchain (idempotent)
#
# TARGET: aarch64-unknown-linux-gnu  armv7-unknown-linux-gnueabihf          (glibc)
#         aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf
#         arm-unknown-linux-musleabihf (ARMv6: Pi Zero W, Pi 1)              (static)
# BOARD:  a name from boards/ (e.g. rpi-4): builds that board's target with its
#         -C target-cpu (binary lands in target/cross/dist/ferry-<board>).
# all:    every TARGET, plus the arm64 and armhf .debs.
#
# Outputs (target/cross/dist/): ferry-<version>-<target> (stripped release binaries),
# ferry_<version>_arm64.deb (from aarch64-unknown-linux-gnu) and ferry_<version>_armhf.deb
# (from arm-unknown-linux-musleabihf: static and ARMv6, so it runs on every 32-bit Pi OS).
#
# Toolchain, all from Debian bookworm's main archive plus PyPI (no rustup, no docker):
# rustc-web/cargo-web 1.85 (the MSRV) with its prebuilt arm64/armhf std, gcc cross linkers
# for glibc, zig (PyPI `ziglang`) + cargo-zigbuild as the musl linker with -Zbuild-std
# (Debian ships no musl std), qemu-user for the smoke tests. Needs root or sudo.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

RUST_V=1.85.0+dfsg3-1~deb12u3   # bookworm main; pinned: bookworm-security carries newer ones
ZIG_PY_V=0.17.1                 # PyPI ziglang
ZIGBUILD_V=0.24.0               # PyPI cargo-zigbuild
ZIG_VENV=/opt/ferry-cross/zig
STAGE=/var/cache/ferry-cross
GNU_TARGETS="aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf"
MUSL_TARGETS="aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf arm-unknown-linux-musleabihf"
ALL_TARGETS="$GNU_TARGETS $MUSL_TARGETS"
export CARGO_TARGET_DIR="${FERRY_CROSS_TARGET_DIR:-$ROOT/target/cross}"
DIST="$CARGO_TARGET_DIR/dist"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

log() { echo "== $*"; }
die() { echo "cross/build.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

# ---------------------------------------------------------------------------- install

apt_pkgs=(
  "rustc-web=$RUST_V" "cargo-web=$RUST_V" "libstd-rust-web-dev=$RUST_V"
  "libstd-rust-web-1.85=$RUST_V" "rust-web-src=$RUST_V"
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross
  qemu-user python3-venv file ca-certificates
)

# Prints the apt packages that are not installed at the wanted version.
missing_pkgs() {
  local p name want have
  for p in "${apt_pkgs[@]}"; do
    name="${p%%=*}"
    want=""; [ "$name" != "$p" ] && want="${p#*=}"
    have="$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)"
    case "$have" in
      "install ok installed "*) [ -z "$want" ] || [ "${have##* }" = "$want" ] || echo "$p" ;;
      *) echo "$p" ;;
    esac
  done
}

install() {
  local missing
  missing="$(missing_pkgs)"
  if [ -n "$missing" ]; then
    log "installing: $(echo $missing)"
    $SUDO dpkg --add-architecture arm64
    $SUDO dpkg --add-architecture armhf
    # bookworm-security's armhf index can fail ("File has unexpected size"); main is enough.
    $SUDO apt-get update -qq || true
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      --allow-downgrades $missing >/dev/null
  fi
  # Target std for the glibc targets: Debian's prebuilt rlibs, extracted from the arm64 and
  # armhf libstd-rust-web-dev packages. Installing them as foreign-architecture packages
  # would pull their whole LLVM dependency tree and breaks on any amd64/arm64 version skew.
  local t arch stamp
  for t in $GNU_TARGETS; do
    case "$t" in aarch64-*) arch=arm64 ;; *) arch=armhf ;; esac
    stamp="/usr/lib/rustlib/$t/.ferry-cross-$RUST_V"
    [ -f "$stamp" ] && continue
    log "installing the Rust $RUST_V std for $t"
    $SUDO mkdir -p "$STAGE"
    $SUDO chown _apt "$STAGE" 2>/dev/null || true
    ( cd "$STAGE"
      $SUDO rm -rf x ./libstd-rust-web-dev_*_"$arch".deb
      $SUDO apt-get download -qq "libstd-rust-web-dev:$arch=$RUST_V"
      $SUDO dpkg-deb -x libstd-rust-web-dev_*_"$arch".deb x
      $SUDO rm -rf "/usr/lib/rustlib/$t"
      $SUDO cp -a "x/usr/lib/rustlib/$t" /usr/lib/rustlib/
      $SUDO rm -rf x
      $SUDO touch "$stamp" )
  done
  # zig supplies musl's crt, libc and libunwind for every ARM flavour; from PyPI.
  if [ ! -f "$ZIG_VENV/.ferry-cross-$ZIG_PY_V-$ZIGBUILD_V" ]; then
    log "installing zig $ZIG_PY_V and cargo-zigbuild $ZIGBUILD_V into $ZIG_VENV"
    $SUDO rm -rf "$ZIG_VENV"
    $SUDO /usr/bin/python3 -m venv "$ZIG_VENV"
    $SUDO "$ZIG_VENV/bin/pip" install -q --disable-pip-version-check \
      "ziglang==$ZIG_PY_V" "cargo-zigbuild==$ZIGBUILD_V"
    $SUDO touch "$ZIG_VENV/.ferry-cross-$ZIG_PY_V-$ZIGBUILD_V"
  fi
}

# ---------------------------------------------------------------------------- build

# The build environment: Debian's rustc/cargo (the MSRV), never rustup's.
cross_env() {
  export PATH="$ZIG_VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc CARGO=/usr/bin/cargo
  unset RUSTUP_TOOLCHAIN RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
  # Shipped binaries carry no symbol table (panic messages keep file:line; backtraces
  # lose function names). Local `cargo build --release` keeps them.
  export CARGO_PROFILE_RELEASE_STRIP=symbols
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
  export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
  export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
}

# RUSTFLAGS for one target (+ optional target cpu). musl: Debian has no self-contained crt
# objects, so zig provides crt, libc and libunwind.
rustflags_for() {
  local t="$1" cpu="${2:-}" flags=""
  case "$t" in *musl*) flags="-C link-self-contained=no" ;; esac
  # AArch64: segments aligned to 16 KiB, not GNU ld's 64 KiB default: the binary runs on
  # 4 KiB and 16 KiB page kernels (every Raspberry Pi OS kernel; the Pi 5's uses 16 KiB),
  # not on 64 KiB page ones, and each segment boundary pads less of the file.
  case "$t" in aarch64-*) flags="$flags -C link-arg=-Wl,-z,max-page-size=16384" ;; esac
  [ -n "$cpu" ] && flags="$flags -C target-cpu=$cpu"
  echo "${flags# }"
}

qemu_for() { case "$1" in aarch64-*) echo qemu-aarch64 ;; arm*) echo qemu-arm ;; esac; }
sysroot_for() {
  case "$1" in
    aarch64-*-gnu) echo /usr/aarch64-linux-gnu ;;
    armv7-*-gnueabihf) echo /usr/arm-linux-gnueabihf ;;
    *) echo "" ;;
  esac
}
# The CPU qemu emulates: the oldest the binary is built for, so an instruction too new
# for the board fails here rather than on the board.
qemu_cpu_for() {
  case "$1" in
    arm-*) echo arm1176 ;;
    armv7-*) echo cortex-a7 ;;
    aarch64-*) echo cortex-a53 ;;
  esac
}

version() { sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1; }

# build TARGET [CPU] [SUFFIX]: builds, strips, copies to $DIST/ferry-<version>-<SUFFIX>.
build_one() {
  local t="$1" cpu="${2:-}" name="${3:-$1}" started rf out
  started=$(date +%s)
  rf="$(rustflags_for "$t" "$cpu")"
  # A per-target RUSTFLAGS variable keeps build scripts (built for the host) untouched.
  local var="CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_RUSTFLAGS"
  log "building $t${cpu:+ (target-cpu $cpu)}"
  case "$t" in
    *gnu*)
      env "$var=$rf" cargo build --release --locked --target "$t" ;;
    *musl*)
      env "$var=$rf" RUSTC_BOOTSTRAP=1 cargo-zigbuild build --release --locked --target "$t" \
        -Zbuild-std=std,panic_abort ;;
    *) die "unknown target $t" ;;
  esac
  mkdir -p "$DIST"
  out="$DIST/ferry-$(version)-$name"
  cp "$CARGO_TARGET_DIR/$t/release/ferry" "$out"
  log "$name: built in $(( $(date +%s) - started ))s: $(stat -c %s "$out") bytes ($(( $(stat -c %s "$out") / 1024 )) KiB); $(file -b "$out" | cut -d, -f1-2,4-5)"
  # The size budget: the stripped aarch64 binary with every feature stays under 5 MiB.
  if [ "$t" = aarch64-unknown-linux-gnu ] && [ "$(stat -c %s "$out")" -ge $((5 * 1024 * 1024)) ]; then
    die "$name is $(stat -c %s "$out") bytes: over the 5 MiB budget"
  fi
  # The file grows in 16 KiB steps (the RELRO segment ends on a max-page-size boundary,
  # see rustflags_for), so its size hides what is left: say how much code and read-only
  # data fit before the next step.
  if [ "$t" = aarch64-unknown-linux-gnu ] && command -v readelf >/dev/null; then
    local text relro room
    text=$(readelf -lW "$out" | awk '$1 == "LOAD" && $7 == "R" && $8 == "E" {print $5}')
    relro=$(readelf -lW "$out" | awk '$1 == "GNU_RELRO" {print $6}')
    if [ -n "$text" ] && [ -n "$relro" ]; then
      room=$(( ( (text + relro + 0x3FFF) / 0x4000 ) * 0x4000 - (text + relro) ))
      log "$name: $room bytes of code and read-only data left before the file grows by 16 KiB; $(( 5 * 1024 * 1024 - $(stat -c %s "$out") )) bytes under the 5 MiB budget"
    fi
  fi
  BUILT="$out"
}

# smoke_one TARGET BINARY [TARGET_CPU]: a board build runs on its own CPU model.
smoke_one() {
  local t="$1" bin="$2" cpu="${3:-}" sr cmd qcpu
  sr="$(sysroot_for "$t")"
  qcpu="$(qemu_cpu_for "$t")"
  case "$cpu" in
    ""|generic) ;;
    arm1176*) qcpu=arm1176 ;;
    *) qcpu="$cpu" ;;
  esac
  cmd=("$(qemu_for "$t")" -cpu "$qcpu")
  [ -n "$sr" ] && cmd+=(-L "$sr")
  log "smoke test $t under ${cmd[*]}"
  /usr/bin/python3 "$ROOT/cross/smoke.py" -- "${cmd[@]}" "$bin"
}

# The glibc version a binary needs at least (highest GLIBC_x.y it references).
glibc_floor() {
  readelf -V "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -t. -k1,1n -k2,2n -u | tail -1
}

deb_arch_for() {
  case "$1" in
    aarch64-unknown-linux-gnu) echo arm64 ;;
    arm-unknown-linux-musleabihf) echo armhf ;;
    *) echo "" ;;
  esac
}

package_one() {
  local t="$1" bin="$2" arch
  arch="$(deb_arch_for "$t")"
  [ -n "$arch" ] || return 0
  bash "$ROOT/cross/debian/mkdeb.sh" --bin "$bin" --arch "$arch" --out "$DIST"
}

# Reads `key = "value"` from a board file's [board] table.
board_key() {
  sed -n '/^\[board\]/,/^\[/p' "$1" | sed -n "s/^$2 *= *\"\(.*\)\".*/\1/p" | head -1
}

main() {
  local what="" smoke=1 deb=1 arg
  for arg in "$@"; do
    case "$arg" in
      --no-smoke) smoke=0 ;;
      --no-deb) deb=0 ;;
      -h|--help) usage ;;
      -*) die "unknown option $arg" ;;
      *) [ -z "$what" ] || die "one TARGET, BOARD or all"; what="$arg" ;;
    esac
  done
  [ -n "$what" ] || usage
  install
  [ "$what" = install ] && return 0
  cross_env
  local jobs=() t cpu name
  case "$what" in
    all) for t in $ALL_TARGETS; do jobs+=("$t||$t"); done ;;
    *-linux-*)
      case " $ALL_TARGETS " in *" $what "*) ;; *) die "unknown target $what (known: $ALL_TARGETS)" ;; esac
      jobs+=("$what||$what") ;;
    *)
      [ -f "boards/$what.toml" ] || die "unknown target or board $what (boards: $(cd boards && ls *.toml | sed 's/\.toml$//' | tr '\n' ' '))"
      t="$(board_key "boards/$what.toml" target)"
      cpu="$(board_key "boards/$what.toml" target_cpu)"
      [ -n "$t" ] || die "boards/$what.toml has no [board] target"
      jobs+=("$t|$cpu|$what") ;;
  esac
  local started=$(date +%s) job
  for job in "${jobs[@]}"; do
    IFS='|' read -r t cpu name <<<"$job"
    build_one "$t" "$cpu" "$name"
    case "$t" in
      *gnu*) log "$name: needs glibc >= $(glibc_floor "$BUILT")" ;;
    esac
    [ "$smoke" = 1 ] && smoke_one "$t" "$BUILT" "$cpu"
    [ "$deb" = 1 ] && [ -z "$cpu" ] && package_one "$t" "$BUILT"
  done
  log "done in $(( $(date +%s) - started ))s; artifacts in $DIST"
  ls -l "$DIST"
}

main "$@"
