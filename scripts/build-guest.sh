#!/usr/bin/env bash
# The typevisor guest recipe: builds the default riscv64 guest from Debian packages only.
#   - Linux: Debian's linux-source-6.1, `make ARCH=riscv defconfig Image`
#   - a static busybox from Debian's busybox source package, in an initramfs whose /init
#     mounts the pseudo filesystems and runs a root shell (prompt "~ # ") on the console.
# Cross-compiled with gcc-riscv64-linux-gnu. The result goes to --out (default: the
# per-user cache, see `typevisor image path`), written atomically.
#
# Usage: build-guest.sh [--out DIR] [--jobs N] [--check]
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/guest"
[[ -n "${TYPEVISOR_CACHE_DIR:-}" ]] && OUT="$TYPEVISOR_CACHE_DIR/guest"
JOBS="$(nproc 2>/dev/null || echo 2)"
CHECK=0
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-guest: unknown option '$1'" >&2; exit 2 ;;
  esac
done

CROSS=riscv64-linux-gnu-
PKGS=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross linux-source-6.1 make gcc libc6-dev bc flex bison
      libssl-dev libelf-dev cpio gzip xz-utils bzip2 dpkg-dev ca-certificates)

step() { printf '\n==> [%s] %s\n' "$1" "$2"; }

step 1/6 "checking Debian packages"
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 && -z "${TYPEVISOR_NO_APT:-}" ]]; then
    echo "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "build-guest: missing Debian packages. Install them with:" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi
KSRC_TAR=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -n1 || true)
[[ -n "$KSRC_TAR" ]] || { echo "build-guest: /usr/src/linux-source-6.1.tar.* not found (package linux-source-6.1)" >&2; exit 1; }
echo "ok: cross compiler $(${CROSS}gcc -dumpversion), kernel source $KSRC_TAR"
if ((CHECK)); then echo "prerequisites present; output would go to $OUT"; exit 0; fi

mkdir -p "$(dirname "$OUT")"
WORK="$(mktemp -d "$(dirname "$OUT")/.guest-build.XXXXXX")"
# Keep the work tree (and its logs) if something fails, so the failure can be inspected.
trap 'status=$?; if [[ $status -eq 0 ]]; then rm -rf "$WORK"; else echo "build-guest: failed; logs kept in $WORK" >&2; fi' EXIT
echo "working in $WORK"

# Show progress without flooding the terminal: one line in every 100, full log kept.
progress() { awk -v logfile="$1" '{ print > logfile; if (NR % 100 == 1) { printf "   %6d  %s\n", NR, $0; fflush() } }'; }

step 2/6 "unpacking $KSRC_TAR"
tar -xf "$KSRC_TAR" -C "$WORK"
KDIR="$WORK/linux-source-6.1"

step 3/6 "building Linux (defconfig, Image) with $JOBS jobs; this is the long part"
make -C "$KDIR" ARCH=riscv CROSS_COMPILE=$CROSS defconfig > "$WORK/kconfig.log"
if ! make -C "$KDIR" ARCH=riscv CROSS_COMPILE=$CROSS -j"$JOBS" Image 2>&1 | progress "$WORK/kernel.log" || [[ ! -f "$KDIR/arch/riscv/boot/Image" ]]; then
  tail -n 40 "$WORK/kernel.log" >&2; echo "build-guest: kernel build failed (log above)" >&2; exit 1
fi

step 4/6 "fetching Debian's busybox source package"
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/bbsrc"
echo "deb-src http://deb.debian.org/debian bookworm main" > "$APT/sources.list"
APTOPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
         -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
apt-get "${APTOPTS[@]}" -qq update
(cd "$WORK/bbsrc" && apt-get "${APTOPTS[@]}" -qq source --download-only busybox)
(cd "$WORK/bbsrc" && dpkg-source --no-check -x ./*.dsc src > /dev/null)
BB="$WORK/bbsrc/src"

step 5/6 "building a static busybox"
make -C "$BB" ARCH=riscv CROSS_COMPILE=$CROSS defconfig > "$WORK/bbconfig.log"
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' "$BB/.config"
make -C "$BB" ARCH=riscv CROSS_COMPILE=$CROSS oldconfig < /dev/null > /dev/null
if ! make -C "$BB" ARCH=riscv CROSS_COMPILE=$CROSS -j"$JOBS" 2>&1 | progress "$WORK/busybox.log"; then
  tail -n 40 "$WORK/busybox.log" >&2; echo "build-guest: busybox build failed (log above)" >&2; exit 1
fi
ROOT="$WORK/rootfs"
make -C "$BB" ARCH=riscv CROSS_COMPILE=$CROSS CONFIG_PREFIX="$ROOT" install > /dev/null

step 6/6 "assembling the initramfs"
mkdir -p "$ROOT"/{dev,proc,sys,tmp,mnt,root,etc/init.d}
install -m 755 "$HERE/guest/init" "$ROOT/init"
install -m 644 "$HERE/guest/inittab" "$ROOT/etc/inittab"
install -m 755 "$HERE/guest/rcS" "$ROOT/etc/init.d/rcS"
install -m 644 "$HERE/guest/profile" "$ROOT/etc/profile"
install -m 644 "$HERE/guest/passwd" "$ROOT/etc/passwd"
# gen_initramfs.sh makes device nodes from the list without needing root, and maps our uid to 0.
(cd "$KDIR" && usr/gen_initramfs.sh -o "$WORK/initramfs.cpio" -u "$(id -u)" -g "$(id -g)" "$ROOT" "$HERE/guest/devices.list")
gzip -9 -n "$WORK/initramfs.cpio"

STAGE="$WORK/out"
mkdir -p "$STAGE"
cp "$KDIR/arch/riscv/boot/Image" "$STAGE/Image"
cp "$WORK/initramfs.cpio.gz" "$STAGE/initramfs.cpio.gz"
cp "$KDIR/.config" "$STAGE/linux-6.1.config"
cp "$BB/.config" "$STAGE/busybox.config"
rm -rf "$OUT.old"
[[ -e "$OUT" ]] && mv "$OUT" "$OUT.old"
mv "$STAGE" "$OUT"
rm -rf "$OUT.old"
echo
echo "default guest ready in $OUT:"
ls -l "$OUT"
