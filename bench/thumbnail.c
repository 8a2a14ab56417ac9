/* thumbnail.c - how fast camgate makes a thumbnail, and with how much
 * memory (bench/thumbnail.sh runs it next to ImageMagick).
 *
 * It makes a realistic camera frame, 1920x1080: smooth gradients, a few
 * soft shapes and sensor-like noise, compressed at quality 85 (4:2:0)
 * with TurboJPEG, optionally writes it out (for ImageMagick to get the
 * same bytes), then thumbnails it to 640x360 with
 * snapshot_jpeg_thumbnail() many times and prints key=value lines:
 * the time per thumbnail (min, median, mean, p95) and the peak memory one
 * thumbnail takes on top of what was allocated before it, next to the
 * size of the image the scaled decoding produces.
 *
 * Memory is counted by wrapping malloc and friends in this program, so
 * every allocation of libturbojpeg and camgate is seen (not with a
 * sanitizer, which owns malloc itself); the process's peak RSS growth
 * (VmHWM after resetting it through /proc/self/clear_refs) is printed as
 * a cross-check.
 *
 * Usage: thumbnail [-n RUNS] [-o input.jpg] [-w W -h H] [-q QUALITY] */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "gateway/snapshot.h"

#define SRC_W 1920
#define SRC_H 1080
#define MAX_RUNS 100000

/* ---- counting allocations ---- */

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_COUNTING 0
#else
#define BENCH_COUNTING 1

void *__libc_malloc(size_t n);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t n);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t n);

static size_t bench_live;
static size_t bench_peak;

static void
bench_add(void *p)
{
  if (p == NULL)
    return;
  bench_live += malloc_usable_size(p);
  if (bench_live > bench_peak)
    bench_peak = bench_live;
}

static void
bench_sub(void *p)
{
  if (p)
    bench_live -= malloc_usable_size(p);
}

void *
malloc(size_t n)
{
  void *p = __libc_malloc(n);

  bench_add(p);
  return p;
}

void *
calloc(size_t n, size_t size)
{
  void *p = __libc_calloc(n, size);

  bench_add(p);
  return p;
}

void *
realloc(void *p, size_t n)
{
  void *q;

  bench_sub(p);
  q = __libc_realloc(p, n);
  if (q == NULL && n > 0)
    bench_add(p);
  else
    bench_add(q);
  return q;
}

void
free(void *p)
{
  bench_sub(p);
  __libc_free(p);
}

int
posix_memalign(void **out, size_t align, size_t n)
{
  void *p = __libc_memalign(align, n);

  if (p == NULL)
    return 12;
  bench_add(p);
  *out = p;
  return 0;
}

void *
aligned_alloc(size_t align, size_t n)
{
  void *p = __libc_memalign(align, n);

  bench_add(p);
  return p;
}
#endif

/* ---- the input picture ---- */

static uint32_t bench_seed = 2463534242u;

static uint32_t
bench_rand(void)
{
  bench_seed ^= bench_seed << 13;
  bench_seed ^= bench_seed >> 17;
  bench_seed ^= bench_seed << 5;
  return bench_seed;
}

/* Noise of a camera sensor after its own denoising: roughly normal,
 * sigma about 4.6 levels (the sum of four uniform 0..7). It puts a
 * 1080p frame at about 220 KB at quality 85, like the snapshots of
 * common 2 MP cameras. */
static int
bench_noise(void)
{
  int s = 0;

  for (int i = 0; i < 4; i++)
    s += (int)(bench_rand() & 7);
  return s - 14;
}

static unsigned char
bench_clamp(int v)
{
  return (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Sky to ground, a sun, a dark box (a car) and a bright window. */
static void
bench_pixel(int x, int y, int w, int h, unsigned char *p)
{
  int sky = y < h / 2;
  int r = sky ? 90 + 80 * y / h : 70 + 60 * x / w;
  int g = sky ? 140 + 60 * y / h : 90 + 40 * (h - y) / h;
  int b = sky ? 220 - 40 * y / h : 50 + 30 * x / w;
  int dx = x - w * 3 / 4, dy = y - h / 5;

  if (dx * dx + dy * dy < (h / 12) * (h / 12)) {
    r = 250;
    g = 240;
    b = 200;
  }
  if (x > w / 5 && x < w / 2 && y > h * 3 / 5 && y < h * 4 / 5) {
    r = 40 + 20 * (x - w / 5) / (w / 3);
    g = 40;
    b = 55;
  }
  if (x > w / 12 && x < w / 6 && y > h / 3 && y < h / 2) {
    r = 230;
    g = 220;
    b = 170;
  }
  p[0] = bench_clamp(r + bench_noise());
  p[1] = bench_clamp(g + bench_noise());
  p[2] = bench_clamp(b + bench_noise());
}

static unsigned char *
bench_make_jpeg(int w, int h, int quality, unsigned long *len)
{
  unsigned char *pix = malloc((size_t)w * (size_t)h * 3);
  unsigned char *buf = NULL;
  unsigned char *out;
  tjhandle tj = tjInitCompress();

  if (pix == NULL || tj == NULL) {
    fprintf(stderr, "thumbnail: out of memory\n");
    exit(1);
  }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      bench_pixel(x, y, w, h, pix + ((size_t)y * (size_t)w + (size_t)x) * 3);
  if (tjCompress2(tj, pix, w, 0, h, TJPF_RGB, &buf, len, TJSAMP_420,
                  quality, 0) != 0) {
    fprintf(stderr, "thumbnail: %s\n", tjGetErrorStr2(tj));
    exit(1);
  }
  out = malloc(*len);
  if (out == NULL)
    exit(1);
  memcpy(out, buf, *len);
  tjFree(buf);
  tjDestroy(tj);
  free(pix);
  return out;
}

/* ---- measuring ---- */

static double
bench_ms(clockid_t clock)
{
  struct timespec ts;

  clock_gettime(clock, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int
bench_cmp(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return x < y ? -1 : x > y;
}

/* A value in kB from /proc/self/status ("VmHWM:", "VmRSS:"). */
static long
bench_status_kb(const char *key)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;

  if (f == NULL)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (strncmp(line, key, strlen(key)) == 0)
      v = strtol(line + strlen(key), NULL, 10);
  fclose(f);
  return v;
}

static int
bench_reset_hwm(void)
{
  FILE *f = fopen("/proc/self/clear_refs", "w");
  int ok;

  if (f == NULL)
    return -1;
  ok = fputs("5", f) >= 0;
  return fclose(f) == 0 && ok ? 0 : -1;
}

static void
bench_thumb(const unsigned char *jpeg, unsigned long len, int tw, int th,
            int q, int *w, int *h, size_t *outlen)
{
  unsigned char *out = NULL;
  char err[160];

  if (snapshot_jpeg_thumbnail(jpeg, len, tw, th, q, &out, outlen, w, h,
                              err, sizeof(err)) != 0) {
    fprintf(stderr, "thumbnail: %s\n", err);
    exit(1);
  }
  free(out);
}

static void
bench_memory(const unsigned char *jpeg, unsigned long len, int tw, int th,
             int q)
{
  int sw, sh, subsamp, w, h;
  size_t outlen, scaled;
  long rss0, hwm;
  char err[160];
  tjscalingfactor sf = {1, 0};

  snapshot_jpeg_info(jpeg, len, &sw, &sh, &subsamp, err, sizeof(err));
  snapshot_fit(sw, sh, tw, th, &w, &h);
  sf.denom = snapshot_scale_denom(sw, sh, w, h);
  /* The scaled image as RGB, the usual measure; camgate decodes it to
   * YUV planes (half that for 4:2:0), printed as well. */
  scaled = (size_t)TJSCALED(sw, sf) * (size_t)TJSCALED(sh, sf) * 3;
  printf("scaled_decode=1/%d scaled_size=%dx%d scaled_rgb_bytes=%zu "
         "scaled_yuv_bytes=%lu\n", sf.denom, TJSCALED(sw, sf),
         TJSCALED(sh, sf), scaled,
         tjBufSizeYUV2(TJSCALED(sw, sf), 1, TJSCALED(sh, sf), subsamp));
#if BENCH_COUNTING
  {
    size_t base, kept;

    /* Cold: without the scratch memory the last thumbnail left. */
    snapshot_cache_clear();
    base = bench_live;

    bench_peak = bench_live;
    bench_thumb(jpeg, len, tw, th, q, &w, &h, &outlen);
    kept = bench_live - base;
    snapshot_cache_clear();
    printf("heap_peak_extra_bytes=%zu heap_peak_vs_scaled_rgb=%.2f "
           "heap_kept_for_next_bytes=%zu heap_leaked_bytes=%zd\n",
           bench_peak - base, (double)(bench_peak - base) / (double)scaled,
           kept, (ssize_t)(bench_live - base));
  }
#else
  printf("heap_peak_extra_bytes=unknown (sanitizer build)\n");
#endif
  /* RSS grows only where pages are touched and freed memory may stay
   * mapped: a cross-check of the heap figure, not a replacement. */
  snapshot_cache_clear();
  malloc_trim(0);
  rss0 = bench_status_kb("VmRSS:");
  if (bench_reset_hwm() == 0 && rss0 > 0) {
    bench_thumb(jpeg, len, tw, th, q, &w, &h, &outlen);
    hwm = bench_status_kb("VmHWM:");
    printf("rss_peak_extra_kb=%ld\n", hwm - rss0);
  }
}

static void
bench_stats(const char *what, double *ms, int runs)
{
  double sum = 0;

  for (int i = 0; i < runs; i++)
    sum += ms[i];
  qsort(ms, (size_t)runs, sizeof(ms[0]), bench_cmp);
  printf("%s_min=%.3f %s_median=%.3f %s_mean=%.3f %s_p95=%.3f\n", what,
         ms[0], what, ms[runs / 2], what, sum / runs, what,
         ms[(size_t)runs * 95 / 100]);
}

int
main(int argc, char **argv)
{
  static double ms[MAX_RUNS], cpu[MAX_RUNS];
  const char *out_path = NULL;
  int runs = 500, tw = 640, th = 360, q = 75, opt, w = 0, h = 0;
  unsigned long len;
  unsigned char *jpeg;
  size_t outlen = 0;

  while ((opt = getopt(argc, argv, "n:o:w:h:q:")) != -1) {
    long v = optarg ? strtol(optarg, NULL, 10) : 0;

    switch (opt) {
    case 'n': runs = v > 0 && v <= MAX_RUNS ? (int)v : runs; break;
    case 'o': out_path = optarg; break;
    case 'w': tw = v > 0 ? (int)v : tw; break;
    case 'h': th = v > 0 ? (int)v : th; break;
    case 'q': q = v > 0 && v <= 100 ? (int)v : q; break;
    default:
      fprintf(stderr, "usage: thumbnail [-n RUNS] [-o input.jpg] "
              "[-w W -h H] [-q QUALITY]\n");
      return 2;
    }
  }
  jpeg = bench_make_jpeg(SRC_W, SRC_H, 85, &len);
  if (out_path) {
    FILE *f = fopen(out_path, "wb");

    if (f == NULL || fwrite(jpeg, 1, len, f) != len || fclose(f) != 0) {
      fprintf(stderr, "thumbnail: cannot write %s\n", out_path);
      return 1;
    }
  }
  printf("input=%dx%d input_bytes=%lu quality=85 subsampling=4:2:0\n",
         SRC_W, SRC_H, len);
  for (int i = 0; i < 20; i++)
    bench_thumb(jpeg, len, tw, th, q, &w, &h, &outlen);
  /* Wall time, and the thread's CPU time, which other load on the
   * machine does not inflate as much. */
  for (int i = 0; i < runs; i++) {
    double t0 = bench_ms(CLOCK_MONOTONIC);
    double c0 = bench_ms(CLOCK_THREAD_CPUTIME_ID);

    bench_thumb(jpeg, len, tw, th, q, &w, &h, &outlen);
    cpu[i] = bench_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
    ms[i] = bench_ms(CLOCK_MONOTONIC) - t0;
  }
  printf("output=%dx%d output_bytes=%zu output_quality=%d runs=%d\n", w, h,
         outlen, q, runs);
  bench_stats("ms", ms, runs);
  bench_stats("cpu_ms", cpu, runs);
  bench_memory(jpeg, len, tw, th, q);
  free(jpeg);
  return 0;
}
