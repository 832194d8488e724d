#!/usr/bin/env bash
# The typevisor guest recipe: builds the default riscv64 guest from Debian packages only.
#   - Linux: Debian's linux-source-6.1, configured for the typevisor virt board:
#     `allnoconfig` + scripts/guest/typevisor-virt.config (all built in, no modules)
#   - a static busybox from Debian's busybox source package (its defconfig), in an
#     initramfs whose /init mounts the pseudo filesystems, brings up eth0 by DHCP when the
#     board has a network card, and runs a root shell (prompt "~ # ") on the console.
# Cross-compiled with gcc-riscv64-linux-gnu. The result goes to --out (default: the
# per-user cache, see `typevisor image path`), written atomically. Logs of a failed build
# are kept (the script names the directory).
#
# Usage: build-guest.sh [--out DIR] [--jobs N] [--kernel-config FRAGMENT | --defconfig] [--check]
#   --kernel-config  merge this fragment onto allnoconfig instead of the board's own
#   --defconfig      build the kernel with Debian's `make defconfig` instead (much slower)
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/guest"
[[ -n "${TYPEVISOR_CACHE_DIR:-}" ]] && OUT="$TYPEVISOR_CACHE_DIR/guest"
JOBS="$(nproc 2>/dev/null || echo 2)"
CHECK=0
KCONFIG=fragment
FRAGMENT="$HERE/guest/typevisor-virt.config"
while (($#)); do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --jobs) JOBS="$2"; shift 2 ;;
    --defconfig) KCONFIG=defconfig; shift ;;
    --kernel-config) FRAGMENT="$(realpath -- "$2")"; shift 2 ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-guest: unknown option '$1'" >&2; exit 2 ;;
  esac
done
[[ "$JOBS" =~ ^[1-9][0-9]*$ ]] || { echo "build-guest: --jobs wants a positive number, got '$JOBS'" >&2; exit 2; }

CROSS=riscv64-linux-gnu-
PKGS=(gcc-riscv64-linux-gnu libc6-dev-riscv64-cross linux-source-6.1 make gcc libc6-dev bc flex bison
      libssl-dev libelf-dev cpio gzip xz-utils bzip2 dpkg-dev ca-certificates)

# For the estimate and the progress percentage: CPU seconds of each part (user+sys,
# measured on a 2-vCPU AMD EPYC host, see README), the parts that run on one core only
# (unpacking, configuring, linking), and how many lines the kernel's make prints.
if [[ $KCONFIG == fragment ]]; then KERNEL_CPU=400 KERNEL_LINES=1282; else KERNEL_CPU=1600 KERNEL_LINES=3300; fi
BUSYBOX_CPU=70 SERIAL_S=40
T0=$SECONDS
NSTEPS=7
step() { printf '\n==> [%s/%s] %s   (%s elapsed)\n' "$1" "$NSTEPS" "$2" "$(elapsed)"; }
elapsed() { local s=$((SECONDS - T0)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

step 1 "checking Debian packages"
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
[[ $KCONFIG == defconfig || -f "$FRAGMENT" ]] || { echo "build-guest: kernel config fragment $FRAGMENT is missing" >&2; exit 1; }
echo "ok: cross compiler $(${CROSS}gcc -dumpversion), kernel source $KSRC_TAR"
EST=$(( (KERNEL_CPU + BUSYBOX_CPU) / JOBS + SERIAL_S ))
echo "kernel config: $([[ $KCONFIG == fragment ]] && echo "allnoconfig + ${FRAGMENT#"$HERE/"}" || echo "Debian defconfig")"
echo "this takes about $(( (EST + 30) / 60 )) minutes with $JOBS jobs on an idle machine (longer if the cores are busy)"
if ((CHECK)); then echo "prerequisites present; output would go to $OUT"; exit 0; fi

mkdir -p "$(dirname "$OUT")"
WORK="$(mktemp -d "$(dirname "$OUT")/.guest-build.XXXXXX")"
# Keep the work tree (and its logs) if something fails, so the failure can be inspected.
# On success it is deleted in the background: the guest can boot meanwhile.
trap 'status=$?; if [[ $status -eq 0 ]]; then rm -rf "$WORK" </dev/null >/dev/null 2>&1 & else echo "build-guest: failed after $(elapsed); logs kept in $WORK (*.log)" >&2; fi' EXIT
echo "working in $WORK"

# Kernel progress: a line at every 5% of the expected make output; the full log is kept.
kprogress() {
  awk -v logfile="$1" -v total="$2" -v t0="$(date +%s)" '
    { print > logfile; n++; pct = int(n * 100 / total); if (pct > 99) pct = 99
      if (pct >= next_pct) { printf "   kernel %3d%%  (%d of ~%d steps, %ds)  %s\n", pct, n, total, systime() - t0, $0; fflush(); next_pct = pct - pct % 5 + 5 } }
    END { close(logfile) }'
}
# Other builds: one line in every 100, full log kept.
progress() { awk -v logfile="$1" '{ print > logfile; if (NR % 100 == 1) { printf "   %6d  %s\n", NR, $0; fflush() } }'; }
fail() { tail -n 40 "$1" >&2; echo "build-guest: $2 (last lines of $1 above)" >&2; exit 1; }

step 2 "unpacking $KSRC_TAR"
tar -xf "$KSRC_TAR" -C "$WORK"
KDIR="$WORK/linux-source-6.1"
KMAKE=(make -C "$KDIR" ARCH=riscv CROSS_COMPILE=$CROSS)

step 3 "configuring Linux"
if [[ $KCONFIG == defconfig ]]; then
  "${KMAKE[@]}" defconfig > "$WORK/kconfig.log" 2>&1 || fail "$WORK/kconfig.log" "kernel defconfig failed"
else
  {
    "${KMAKE[@]}" allnoconfig &&
    (cd "$KDIR" && KCONFIG_CONFIG=.config scripts/kconfig/merge_config.sh -m -O . .config "$FRAGMENT") &&
    "${KMAKE[@]}" olddefconfig
  } > "$WORK/kconfig.log" 2>&1 || fail "$WORK/kconfig.log" "kernel configuration failed"
  # Kconfig silently drops an option whose dependencies are off: every line of the fragment
  # must have survived, or the guest would lack a driver without anyone noticing.
  lost=()
  while IFS= read -r line; do
    if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
      grep -qxF -- "$line" "$KDIR/.config" || lost+=("$line (got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$KDIR/.config" || echo unset))")
    elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      ! grep -qE "^${BASH_REMATCH[1]}=[ym]" "$KDIR/.config" || lost+=("$line (got: $(grep -E "^${BASH_REMATCH[1]}=" "$KDIR/.config"))")
    fi
  done < "$FRAGMENT"
  if ((${#lost[@]})); then
    echo "build-guest: these lines of ${FRAGMENT#"$HERE/"} did not survive into the kernel .config (a dependency is missing):" >&2
    printf '  %s\n' "${lost[@]}" >&2
    exit 1
  fi
  echo "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$FRAGMENT") lines of ${FRAGMENT#"$HERE/"} are in .config"
fi

step 4 "fetching Debian's busybox source package"
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/bbsrc"
echo "deb-src http://deb.debian.org/debian bookworm main" > "$APT/sources.list"
APTOPTS=(-o "Dir::Etc::SourceList=$APT/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
         -o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)")
apt-get "${APTOPTS[@]}" -qq update
(cd "$WORK/bbsrc" && apt-get "${APTOPTS[@]}" -qq source --download-only busybox)
(cd "$WORK/bbsrc" && dpkg-source --no-check -x ./*.dsc src > /dev/null)
BB="$WORK/bbsrc/src"
BBMAKE=(make -C "$BB" ARCH=riscv CROSS_COMPILE=$CROSS)

step 5 "building a static busybox (defconfig) with $JOBS jobs"
"${BBMAKE[@]}" defconfig > "$WORK/bbconfig.log" 2>&1 || fail "$WORK/bbconfig.log" "busybox defconfig failed"
# Static (no libc in the initramfs); tc does not build against current kernel headers.
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' "$BB/.config"
"${BBMAKE[@]}" oldconfig < /dev/null >> "$WORK/bbconfig.log" 2>&1 || fail "$WORK/bbconfig.log" "busybox oldconfig failed"
"${BBMAKE[@]}" -j"$JOBS" 2>&1 | progress "$WORK/busybox.log" || fail "$WORK/busybox.log" "busybox build failed"
ROOT="$WORK/rootfs"
"${BBMAKE[@]}" CONFIG_PREFIX="$ROOT" install > "$WORK/bbinstall.log" 2>&1 || fail "$WORK/bbinstall.log" "busybox install failed"
for applet in sh init mount udhcpc ip ifconfig route ping wget nc httpd md5sum sha256sum mkfs.ext2 dd sync poweroff reboot setsid; do
  [[ -e "$ROOT/bin/$applet" || -e "$ROOT/sbin/$applet" || -e "$ROOT/usr/bin/$applet" || -e "$ROOT/usr/sbin/$applet" ]] ||
    { echo "build-guest: busybox lacks the applet '$applet'" >&2; exit 1; }
done

step 6 "building Linux (Image) with $JOBS jobs; this is the long part"
"${KMAKE[@]}" -j"$JOBS" Image 2>&1 | kprogress "$WORK/kernel.log" "$KERNEL_LINES" || fail "$WORK/kernel.log" "kernel build failed"
[[ -f "$KDIR/arch/riscv/boot/Image" ]] || fail "$WORK/kernel.log" "kernel build made no arch/riscv/boot/Image"
echo "   kernel 100%  ($(wc -l < "$WORK/kernel.log") steps)"

step 7 "assembling the initramfs"
mkdir -p "$ROOT"/{dev,proc,sys,tmp,mnt,root,etc/init.d,usr/share/udhcpc}
install -m 755 "$HERE/guest/init" "$ROOT/init"
install -m 644 "$HERE/guest/inittab" "$ROOT/etc/inittab"
install -m 755 "$HERE/guest/rcS" "$ROOT/etc/init.d/rcS"
install -m 644 "$HERE/guest/profile" "$ROOT/etc/profile"
install -m 644 "$HERE/guest/passwd" "$ROOT/etc/passwd"
install -m 755 "$HERE/guest/udhcpc.script" "$ROOT/usr/share/udhcpc/default.script"
install -D -m 755 "$HERE/guest/acpi-power" "$ROOT/etc/acpi/PWRF/00000080"
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
echo "default guest ready in $OUT after $(elapsed):"
ls -l "$OUT"
