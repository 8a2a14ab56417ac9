#!/bin/bash
# bench/thumbnail.sh - camgate's snapshot thumbnails next to ImageMagick.
#
# Builds bench/thumbnail, which makes a 1920x1080 camera-like JPEG
# (gradients, shapes, sensor noise; quality 85, 4:2:0) and thumbnails it
# to 640x360 with camgate's own code THUMB_RUNS times, printing the time
# per thumbnail and the peak memory one thumbnail adds. Then ImageMagick's
# `convert -thumbnail 640x360` on the same file: once per process (as a
# script calling it per alert would), and IM_BATCH images in one process
# (start-up shared), and the same with `-define jpeg:size=640x360`, the
# hint that lets ImageMagick use libjpeg's scaled decoding too. Installs
# Debian's imagemagick with apt-get when it is missing, and calls it by
# its Debian path (a `convert` earlier in PATH may be something else).
#
# Environment: BUILD (build dir, default build-bench), THUMB_RUNS (500),
# IM_RUNS (30), IM_BATCH (20). Prints key=value lines and a summary;
# exits 1 when something fails to run (never for a figure).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
RUNS=${THUMB_RUNS:-500}
IM_RUNS=${IM_RUNS:-30}
IM_BATCH=${IM_BATCH:-20}
PY=/usr/bin/python3
TMP=$(mktemp -d /tmp/camgate-thumb-XXXXXX)
trap 'rm -rf "$TMP"' EXIT

log() { printf '[thumbnail] %s\n' "$*" >&2; }

need_imagemagick() {
  if dpkg-query -W -f='${Status}' imagemagick 2>/dev/null |
      grep -q 'ok installed'; then
    return
  fi
  log "installing imagemagick"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "need root or sudo"; exit 1; }
    sudo=(sudo)
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
    --no-install-recommends imagemagick >/dev/null
}

find_convert() {
  local c
  for c in /usr/bin/convert-im6.q16 /usr/bin/convert /usr/bin/magick; do
    if [ -x "$c" ] && "$c" -version 2>/dev/null | grep -q ImageMagick; then
      echo "$c"
      return
    fi
  done
  log "no ImageMagick convert found"
  exit 1
}

"$ROOT/scripts/setup.sh" >/dev/null
need_imagemagick
CONVERT=$(find_convert)
log "building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target thumbnail -j"$(nproc)" >/dev/null

log "camgate: $RUNS thumbnails"
"$BUILD/bench/thumbnail" -n "$RUNS" -o "$TMP/in.jpg" | tee "$TMP/camgate.txt"

log "ImageMagick: $("$CONVERT" -version | head -1)"
"$PY" - "$CONVERT" "$TMP" "$IM_RUNS" "$IM_BATCH" <<'EOF' | tee "$TMP/im.txt"
import os, resource, statistics, subprocess, sys, time
convert, tmp, runs, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    int(sys.argv[4])
src = os.path.join(tmp, "in.jpg")

def run(args):
  t = time.monotonic()
  subprocess.run(args, check=True, timeout=120, stdout=subprocess.DEVNULL)
  return (time.monotonic() - t) * 1000

def size(path):
  out = subprocess.run([convert, path, "-format", "%wx%h", "info:"],
                       check=True, capture_output=True, text=True,
                       timeout=60).stdout
  return out.strip()

hint = ["-define", "jpeg:size=640x360"]
for tag, extra in (("im", []), ("im_hint", hint)):
  out = os.path.join(tmp, tag + ".jpg")
  cmd = [convert] + extra + [src, "-thumbnail", "640x360", out]
  run(cmd)
  per = sorted(run(cmd) for _ in range(runs))
  print("%s_process_ms_median=%.2f %s_process_ms_min=%.2f output=%s"
        % (tag, statistics.median(per), tag, per[0], size(out)))
  if tag == "im":
    # Before any batch: the peak of one image's process.
    print("im_single_max_rss_kb=%d" % resource.getrusage(
        resource.RUSAGE_CHILDREN).ru_maxrss)
  outs = os.path.join(tmp, tag + "-%d.jpg")
  cmd = [convert] + extra + [src] * batch + ["-thumbnail", "640x360", outs]
  per = sorted(run(cmd) / batch for _ in range(max(3, runs // 10)))
  print("%s_batch_ms_per_image_median=%.2f" % (tag, statistics.median(per)))
EOF

"$PY" - "$TMP/camgate.txt" "$TMP/im.txt" <<'EOF'
import sys
kv = {}
for path in sys.argv[1:]:
  for line in open(path):
    for tok in line.split():
      if "=" in tok:
        k, v = tok.split("=", 1)
        kv[k] = v
cg = float(kv["ms_median"])
cpu = float(kv["cpu_ms_median"])
print()
print("1920x1080 q85 JPEG (%s bytes) to 640x360:" % kv["input_bytes"])
print("  camgate            %6.2f ms median (%.2f ms CPU), in process"
      % (cg, cpu))
for tag, name in (("im", "convert"), ("im_hint", "convert + jpeg:size")):
  proc = float(kv[tag + "_process_ms_median"])
  batch = float(kv[tag + "_batch_ms_per_image_median"])
  print("  %-18s %6.2f ms per process, %.2f ms per image in a batch "
        "(camgate %.1fx / %.1fx faster)" % (name, proc, batch, proc / cg,
                                           batch / cg))
peak = int(kv["heap_peak_extra_bytes"])
rgb, yuv = int(kv["scaled_rgb_bytes"]), int(kv["scaled_yuv_bytes"])
print("  peak extra heap per thumbnail: %d KB = %.2fx the scaled decode as "
      "RGB (%d KB), %.2fx as camgate's YUV planes (%d KB)"
      % (peak // 1024, peak / rgb, rgb // 1024, peak / yuv, yuv // 1024))
print("  convert, one image per process: max RSS %d KB"
      % int(kv["im_single_max_rss_kb"]))
EOF
