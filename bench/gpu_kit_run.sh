#!/usr/bin/env bash
# CARROT GPU bench kit: `bash kit/run.sh [entry options…]` on a machine with an NVIDIA GPU and no network.
# Built by `deno task gpu-kit` (tasks/gpu_kit.ts); this file is bench/gpu_kit_run.sh in the repository.
#
# What it does, following ../shared/STACK.md §8 (the recipe that gave Deno's WebGPU the NVIDIA adapter):
#   1. prints the host (GPU, driver, CPUs);
#   2. makes the Vulkan loader and libglvnd available: if `ldconfig -p` lacks libvulkan.so.1 or libGLdispatch.so.0,
#      unpacks debs/*.deb with `dpkg -x` into / and runs ldconfig when root (as §8), else into
#      $TMPDIR/carrot-gpu-kit-sysroot with LD_LIBRARY_PATH (KIT_LOCAL_DEBS=1 forces the local way,
#      KIT_SKIP_DEBS=1 skips this step);
#   3. exports VK_DRIVER_FILES (and VK_ICD_FILENAMES, its older name) for the NVIDIA ICD JSON when one exists,
#      __EGL_VENDOR_LIBRARY_FILENAMES for NVIDIA's EGL vendor file, and a private XDG_RUNTIME_DIR;
#   4. decompresses deno.xz into $TMPDIR (once per kit; KIT_DENO=/path/to/deno uses that binary instead);
#   5. runs gpu_kit.bundle.js offline (--cached-only --no-remote --no-npm --deny-net, an empty DENO_DIR) with
#      --budget = what is left of KIT_BUDGET seconds (default from kit.env) less 45 s (a stage once started runs to
#      its end) and a hard `timeout` 40 s later;
#   6. leaves the log and the results JSON in $OUT when set (the device tool's folder), else in the kit's results/.
# Extra arguments go to the entry (e.g. --quick, --backend wasm, --stages backbone,head); `--help` lists them.
set -uo pipefail
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
START=$(date +%s)
# shellcheck source=/dev/null
[ -f "$KIT/kit.env" ] && . "$KIT/kit.env"
BUDGET="${KIT_BUDGET:-${KIT_BUDGET_DEFAULT:-560}}"
RESULTS="${OUT:-$KIT/results}"
mkdir -p "$RESULTS"
LOG="$RESULTS/gpu_kit.log"
JSON="$RESULTS/gpu_kit_results.json"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
# On exit, close our end of the pipe and let tee finish, so that the last lines reach the caller and the log.
trap 'exec 1>&- 2>&-; wait "$TEE_PID" 2>/dev/null' EXIT

echo "== host =="
echo "kit: $KIT ($(cat "$KIT/VERSION" 2>/dev/null || echo 'no VERSION file'))"
echo "$(uname -srm); $(nproc) CPUs; user $(id -un)"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
else
  echo "gpu: nvidia-smi not found"
fi

echo "== loaders =="
have() { ldconfig -p 2>/dev/null | grep -q "$1"; }
if [ "${KIT_SKIP_DEBS:-0}" = 1 ]; then
  echo "debs: skipped (KIT_SKIP_DEBS=1)"
elif ! ls "$KIT"/debs/*.deb >/dev/null 2>&1; then
  echo "debs: none in the kit (built with --skipDebs); using the system's libraries"
elif [ "${KIT_LOCAL_DEBS:-0}" != 1 ] && have libvulkan.so.1 && have libGLdispatch.so.0; then
  echo "debs: not needed (ldconfig already has libvulkan.so.1 and libGLdispatch.so.0)"
else
  unpack() { # unpack DEB DIR, with dpkg-deb when present, else ar + tar
    if command -v dpkg >/dev/null 2>&1; then
      dpkg -x "$1" "$2"
    else
      local t
      t="$(mktemp -d)"
      (cd "$t" && ar x "$1" && tar -xf data.tar.* -C "$2")
      rm -rf "$t"
    fi
  }
  if [ "$(id -u)" = 0 ] && [ "${KIT_LOCAL_DEBS:-0}" != 1 ]; then
    for f in "$KIT"/debs/*.deb; do unpack "$f" /; done
    ldconfig
    echo "debs: unpacked into / and ran ldconfig: $(cd "$KIT/debs" && echo *.deb)"
  else
    ROOT="${TMPDIR:-/tmp}/carrot-gpu-kit-sysroot"
    mkdir -p "$ROOT"
    for f in "$KIT"/debs/*.deb; do unpack "$f" "$ROOT"; done
    export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "debs: unpacked into $ROOT; LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  fi
fi
for lib in libvulkan.so.1 libGLdispatch.so.0 libEGL.so.1; do
  if have "$lib"; then echo "$lib: $(ldconfig -p | grep -m1 "$lib" | sed 's/.*=> //')"; else echo "$lib: not in ldconfig"; fi
done
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then
    export VK_DRIVER_FILES="$icd" VK_ICD_FILENAMES="$icd"
    break
  fi
done
for egl in /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json /usr/share/glvnd/egl_vendor.d/10_nvidia.json; do
  if [ -f "$egl" ]; then
    export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
    break
  fi
done
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-(unset: no NVIDIA ICD found; Deno takes whatever adapter there is)}"
echo "__EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-(unset)}"
XDG_RUNTIME_DIR="$(mktemp -d)"
chmod 700 "$XDG_RUNTIME_DIR"
export XDG_RUNTIME_DIR

echo "== deno =="
if [ -n "${KIT_DENO:-}" ]; then
  DENO="$KIT_DENO"
elif [ -f "$KIT/deno.xz" ]; then
  # outside the kit, so that the kit stays small enough to carry again
  DENO="${TMPDIR:-/tmp}/carrot-gpu-kit-deno-$(cksum <"$KIT/deno.xz" | cut -d' ' -f1)/deno"
  if [ ! -x "$DENO" ]; then
    mkdir -p "$(dirname "$DENO")"
    if command -v xz >/dev/null 2>&1; then
      xz -dc "$KIT/deno.xz" >"$DENO.tmp"
    else
      python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        "$KIT/deno.xz" "$DENO.tmp"
    fi && chmod +x "$DENO.tmp" && mv "$DENO.tmp" "$DENO"
  fi
else
  DENO="$(command -v deno || true)"
fi
if [ -z "$DENO" ] || ! "$DENO" --version >/dev/null 2>&1; then
  echo "deno: not available (no deno.xz in the kit, no KIT_DENO, none on PATH)"
  exit 3
fi
echo "$("$DENO" --version | head -1) at $DENO ($(($(date +%s) - START)) s so far)"

echo "== run =="
LEFT=$((BUDGET - ($(date +%s) - START)))
if [ "$LEFT" -lt 60 ]; then
  echo "only $LEFT s of the $BUDGET s budget left; not starting"
  exit 4
fi
DENO_DIR="$(mktemp -d)"
export DENO_DIR DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
# shellcheck disable=SC2086
timeout --kill-after=10 "$((LEFT - 5))" "$DENO" run -A --deny-net --no-config --no-lock --no-remote --no-npm \
  --cached-only "$KIT/gpu_kit.bundle.js" --budget "$((LEFT - 45))" --json "$JSON" ${KIT_DEFAULT_ARGS:-} "$@"
RC=$?
[ "$RC" = 124 ] && echo "the run overran its time budget and was stopped (partial results kept)"
echo "== done: exit $RC after $(($(date +%s) - START)) s; log $LOG; results $JSON =="
rm -rf "$DENO_DIR" "$XDG_RUNTIME_DIR"
exit "$RC"
