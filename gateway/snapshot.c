/* snapshot.c - see snapshot.h.
 *
 * TurboJPEG 2.1 (Debian 12) has the tj* API, not tj3*. Handles are made
 * per call: that costs microseconds and keeps every call independent of
 * threads. A thumbnail never exists as RGB: the JPEG is decoded (scaled)
 * to its YUV planes, each plane is resized on its own, and the encoder
 * takes the planes as they are. That skips the colour conversions and
 * chroma resampling both ways, and halves the memory: a thumbnail's peak
 * is the scaled planes, the small planes and libjpeg's few rows of
 * working memory. */
#include "gateway/snapshot.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "gateway/log.h"

/* Resize weights are fixed point with 12 fraction bits on each axis, so
 * a sum over both (255 << 24 at most) fits in 32 bits. */
#define SNAP_FRAC_BITS 12
#define SNAP_ONE (1 << SNAP_FRAC_BITS)

#define SNAP_ERR_LEN 160
#define SNAP_SCRATCH_MAX (8u * 1024 * 1024)
#define SNAP_PNG_SIG "\x89PNG\r\n\x1a\n"
#define SNAP_FIRST SIZE_MAX

/* One axis of a resize: destination i is the weighted sum of the taps
 * source pixels from start[i], with weights w[i * taps ..] adding up to
 * SNAP_ONE. Every destination pixel has the same number of taps (some
 * weights zero), so the inner loops have a fixed shape. */
struct snap_axis {
  int taps;
  int *start;
  uint32_t *w;
};

struct snap_entry {
  int64_t ev_id;
  int64_t recv_time;
  int box_w;
  int box_h;
  int quality;
  size_t att;               /* SNAP_FIRST: the first usable picture */
  struct snapshot *snap;    /* NULL: no usable picture */
  uint64_t used;
};

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snap_entry snap_cache[SNAPSHOT_CACHE_ENTRIES];
static size_t snap_n;
static size_t snap_bytes;
static uint64_t snap_tick;

int
snapshot_fit(int w, int h, int box_w, int box_h, int *out_w, int *out_h)
{
  int64_t bw = box_w > 0 ? box_w : w;
  int64_t bh = box_h > 0 ? box_h : h;

  if (w <= 0 || h <= 0)
    return -1;
  if (w <= bw && h <= bh) {
    *out_w = w;
    *out_h = h;
    return 0;
  }
  /* The side that hits the box first sets the scale. */
  if ((int64_t)w * bh >= (int64_t)h * bw) {
    *out_w = (int)bw;
    *out_h = (int)(((int64_t)h * bw * 2 + w) / (2 * (int64_t)w));
  } else {
    *out_h = (int)bh;
    *out_w = (int)(((int64_t)w * bh * 2 + h) / (2 * (int64_t)h));
  }
  if (*out_w < 1)
    *out_w = 1;
  if (*out_h < 1)
    *out_h = 1;
  return 0;
}

int
snapshot_scale_denom(int w, int h, int tw, int th)
{
  static const int denoms[] = {8, 4, 2};

  for (size_t i = 0; i < sizeof(denoms) / sizeof(denoms[0]); i++) {
    tjscalingfactor sf = {1, denoms[i]};

    if (TJSCALED(w, sf) >= tw && TJSCALED(h, sf) >= th)
      return denoms[i];
  }
  return 1;
}

/* The first and one-past-last source pixel under destination pixel i,
 * when source pixel j spans [j*d, (j+1)*d) and destination pixel i spans
 * [i*s, (i+1)*s) on a common scale. */
static void
snap_span(int i, int s, int d, int *first, int *end)
{
  int64_t lo = (int64_t)i * s;

  *first = (int)(lo / d);
  *end = (int)((lo + s + d - 1) / d);
}

/* Each weight is the difference of two rounded running sums, so the
 * weights of a pixel add up to SNAP_ONE exactly and none is negative. A
 * pixel near the far edge reads its taps from further left, with zero
 * weights first, so no tap lies past the edge. */
static void
snap_axis_init(struct snap_axis *ax, int s, int d)
{
  int first, end;

  ax->taps = 1;
  for (int i = 0; i < d; i++) {
    snap_span(i, s, d, &first, &end);
    if (end - first > ax->taps)
      ax->taps = end - first;
  }
  ax->start = xcalloc((size_t)d, sizeof(int));
  ax->w = xcalloc((size_t)d * (size_t)ax->taps, sizeof(uint32_t));
  for (int i = 0; i < d; i++) {
    int64_t lo = (int64_t)i * s;
    int64_t prev = 0;
    int shift;

    snap_span(i, s, d, &first, &end);
    ax->start[i] = first + ax->taps > s ? s - ax->taps : first;
    shift = first - ax->start[i];
    for (int j = first; j < end; j++) {
      int64_t stop = (int64_t)(j + 1) * d;
      int64_t cum;

      if (stop > lo + s)
        stop = lo + s;
      cum = ((stop - lo) * SNAP_ONE + s / 2) / s;
      ax->w[(size_t)i * (size_t)ax->taps + (size_t)(shift + j - first)] =
        (uint32_t)(cum - prev);
      prev = cum;
    }
  }
}

static void
snap_axis_free(struct snap_axis *ax)
{
  free(ax->start);
  free(ax->w);
}

/* Sums the source rows under destination row y, each times its weight,
 * into col (n samples, each at most 255 << 12). Two and three taps are
 * what a shrink by less than two (after scaled decoding) needs. */
static void
snap_vpass(const unsigned char *src, size_t spitch, size_t n,
           const struct snap_axis *ay, int y, uint32_t *col)
{
  const unsigned char *r = src + (size_t)ay->start[y] * spitch;
  const uint32_t *w = ay->w + (size_t)y * (size_t)ay->taps;

  if (ay->taps == 2) {
    for (size_t x = 0; x < n; x++)
      col[x] = w[0] * r[x] + w[1] * r[spitch + x];
    return;
  }
  if (ay->taps == 3) {
    for (size_t x = 0; x < n; x++)
      col[x] = w[0] * r[x] + w[1] * r[spitch + x] + w[2] * r[2 * spitch + x];
    return;
  }
  for (size_t x = 0; x < n; x++)
    col[x] = w[0] * r[x];
  for (int k = 1; k < ay->taps; k++)
    for (size_t x = 0; x < n; x++)
      col[x] += w[k] * r[(size_t)k * spitch + x];
}

/* One output sample from taps samples ch apart, rounded off both axes'
 * fractions (255 << 24 at most before the shift). */
static unsigned char
snap_tap(const uint32_t *p, const uint32_t *w, int taps, size_t ch)
{
  uint32_t v = 1u << 23;

  for (int k = 0; k < taps; k++)
    v += w[k] * p[(size_t)k * ch];
  return (unsigned char)(v >> 24);
}

/* Sums col horizontally into one destination row. */
static void
snap_hpass(const uint32_t *col, int ch, const struct snap_axis *ax, int dw,
           unsigned char *out)
{
  int taps = ax->taps;

  if (ch == 1 && taps == 2) {
    for (int i = 0; i < dw; i++) {
      const uint32_t *p = col + ax->start[i];
      const uint32_t *w = ax->w + (size_t)i * 2;

      out[i] = (unsigned char)((w[0] * p[0] + w[1] * p[1] + (1u << 23)) >>
                               24);
    }
    return;
  }
  for (int i = 0; i < dw; i++) {
    const uint32_t *p = col + (size_t)ax->start[i] * (size_t)ch;
    const uint32_t *w = ax->w + (size_t)i * (size_t)taps;

    for (int c = 0; c < ch; c++)
      *out++ = snap_tap(p + c, w, taps, (size_t)ch);
  }
}

/* Vertical first: the row sums are plain runs over bytes, and the
 * horizontal pass, with its per-pixel weights, runs once per
 * destination row rather than once per source row. */
void
snapshot_resize(const unsigned char *src, int sw, int sh, size_t spitch,
                int ch, unsigned char *dst, int dw, int dh, size_t dpitch)
{
  struct snap_axis ax, ay;
  size_t n = (size_t)sw * (size_t)ch;
  uint32_t *col;

  if (sw == dw && sh == dh) {
    for (int y = 0; y < dh; y++)
      memcpy(dst + (size_t)y * dpitch, src + (size_t)y * spitch,
             (size_t)dw * (size_t)ch);
    return;
  }
  snap_axis_init(&ax, sw, dw);
  snap_axis_init(&ay, sh, dh);
  col = xcalloc(n, sizeof(*col));
  for (int y = 0; y < dh; y++) {
    snap_vpass(src, spitch, n, &ay, y, col);
    snap_hpass(col, ch, &ax, dw, dst + (size_t)y * dpitch);
  }
  free(col);
  snap_axis_free(&ay);
  snap_axis_free(&ax);
}

/* Returns 0 when a TurboJPEG call went well, or only warned about stray
 * bytes between markers (common in camera JPEGs and harmless); -1 with
 * err otherwise. A truncated file is only a warning to libjpeg, which
 * paints the rest grey: here it is an error. */
static int
snap_tj_check(tjhandle tj, int rc, char *err, size_t errsz)
{
  const char *msg;

  if (rc == 0)
    return 0;
  msg = tjGetErrorStr2(tj);
  if (msg == NULL)
    msg = "unknown error";
  if (tjGetErrorCode(tj) == TJERR_WARNING &&
      strstr(msg, "extraneous bytes") != NULL)
    return 0;
  if (strcasestr(msg, "premature end") != NULL)
    snprintf(err, errsz, "truncated JPEG (%s)", msg);
  else
    snprintf(err, errsz, "corrupt JPEG (%s)", msg);
  return -1;
}

static int
snap_header(tjhandle tj, const unsigned char *jpeg, size_t len, int *w,
            int *h, int *subsamp, int *cs, char *err, size_t errsz)
{
  int rc;

  if (jpeg == NULL || len < 4) {
    snprintf(err, errsz, "not a JPEG (%zu bytes)", len);
    return -1;
  }
  if (jpeg[0] != 0xFF || jpeg[1] != 0xD8) {
    snprintf(err, errsz, "not a JPEG (starts with 0x%02x 0x%02x)",
             jpeg[0], jpeg[1]);
    return -1;
  }
  /* A tables-only stream (or one cut before its frame header) comes
   * back as success with nothing filled in. */
  *w = *h = 0;
  *subsamp = *cs = -1;
  rc = tjDecompressHeader3(tj, jpeg, (unsigned long)len, w, h, subsamp,
                           cs);
  if (rc != 0) {
    snprintf(err, errsz, "bad JPEG header (%s)", tjGetErrorStr2(tj));
    return -1;
  }
  if (*w <= 0 || *h <= 0) {
    snprintf(err, errsz, "no JPEG frame header (garbage after the "
             "start marker, or cut short)");
    return -1;
  }
  if (*w > SNAPSHOT_MAX_SIDE ||
      *h > SNAPSHOT_MAX_SIDE || (long)*w * *h > SNAPSHOT_MAX_PIXELS) {
    snprintf(err, errsz, "JPEG too large (%dx%d)", *w, *h);
    return -1;
  }
  if (*cs == TJCS_CMYK || *cs == TJCS_YCCK) {
    snprintf(err, errsz, "CMYK JPEG not supported");
    return -1;
  }
  return 0;
}

int
snapshot_jpeg_info(const unsigned char *jpeg, size_t len, int *w, int *h,
                   int *subsamp, char *err, size_t errsz)
{
  tjhandle tj = tjInitDecompress();
  int cs = 0;
  int rc;

  if (tj == NULL)
    fatal("snapshot: tjInitDecompress failed");
  rc = snap_header(tj, jpeg, len, w, h, subsamp, &cs, err, errsz);
  tjDestroy(tj);
  return rc;
}

/* Many cameras end their JPEGs without the EOI marker, which libjpeg
 * reports just like a file cut short. With the marker added, a complete
 * scan decodes cleanly and a cut one still fails, so a copy with EOI is
 * decoded instead. Returns jpeg, or a copy in *copy for the caller to
 * free. Zero bytes after EOI (padding) are no reason to copy. */
static const unsigned char *
snap_with_eoi(const unsigned char *jpeg, size_t *len, unsigned char **copy)
{
  size_t n = *len;

  *copy = NULL;
  while (n > 2 && jpeg[n - 1] == 0x00)
    n--;
  if (n >= 2 && jpeg[n - 2] == 0xFF && jpeg[n - 1] == 0xD9)
    return jpeg;
  *copy = xmalloc(*len + 2);
  memcpy(*copy, jpeg, *len);
  (*copy)[*len] = 0xFF;
  (*copy)[*len + 1] = 0xD9;
  *len += 2;
  return *copy;
}

/* Decodes at 1/denom into a new buffer of pf pixels; *w, *h in: the
 * JPEG's size, out: the decoded size. */
static unsigned char *
snap_decode(tjhandle tj, const unsigned char *jpeg, size_t len, int denom,
            int pf, int *w, int *h, char *err, size_t errsz)
{
  tjscalingfactor sf = {1, denom};
  int sw = TJSCALED(*w, sf);
  int sh = TJSCALED(*h, sf);
  unsigned char *pix, *copy;
  int rc;

  jpeg = snap_with_eoi(jpeg, &len, &copy);
  pix = xmalloc((size_t)sw * (size_t)sh * (size_t)tjPixelSize[pf]);
  rc = tjDecompress2(tj, jpeg, (unsigned long)len, pix, sw, 0, sh, pf, 0);
  free(copy);
  if (snap_tj_check(tj, rc, err, errsz) < 0) {
    free(pix);
    return NULL;
  }
  *w = sw;
  *h = sh;
  return pix;
}

int
snapshot_jpeg_check(const unsigned char *jpeg, size_t len, int *w, int *h,
                    char *err, size_t errsz)
{
  tjhandle tj = tjInitDecompress();
  unsigned char *pix = NULL;
  int subsamp, cs, sw, sh;

  if (tj == NULL)
    fatal("snapshot: tjInitDecompress failed");
  if (snap_header(tj, jpeg, len, w, h, &subsamp, &cs, err, errsz) == 0) {
    sw = *w;
    sh = *h;
    /* Gray skips the colour conversion; every coefficient of every
     * component is still entropy-decoded, which is what finds damage. */
    pix = snap_decode(tj, jpeg, len, 8, TJPF_GRAY, &sw, &sh, err, errsz);
  }
  tjDestroy(tj);
  if (pix == NULL)
    return -1;
  free(pix);
  return 0;
}

/* An image as YUV planes: Y, then Cb and Cr (none for gray). */
struct snap_planes {
  int n;                      /* 1 or 3 */
  int subsamp;                /* TJSAMP_* */
  int w[3];                   /* the samples that are the picture */
  int h[3];
  int stride[3];              /* as TurboJPEG sizes them (padded) */
  int rows[3];
  unsigned char *p[3];
};

/* Fresh memory costs a page fault per 4 KB: about 0.5 ms for the planes
 * of a 1080p frame, a tenth of its thumbnail. So each thread keeps the
 * memory of its last thumbnail (up to SNAP_SCRATCH_MAX) for the next;
 * snapshot_cache_clear() lets it go. */
static _Thread_local unsigned char *snap_scratch;
static _Thread_local size_t snap_scratch_cap;

/* Returns at least n bytes and their size in *cap. */
static unsigned char *
snap_scratch_get(size_t n, size_t *cap)
{
  unsigned char *p = snap_scratch;

  if (p && snap_scratch_cap >= n) {
    *cap = snap_scratch_cap;
    snap_scratch = NULL;
    return p;
  }
  *cap = n;
  return xmalloc(n);
}

static void
snap_scratch_put(unsigned char *p, size_t cap)
{
  if (cap > SNAP_SCRATCH_MAX || (snap_scratch && snap_scratch_cap >= cap)) {
    free(p);
    return;
  }
  free(snap_scratch);
  snap_scratch = p;
  snap_scratch_cap = cap;
}

/* Sizes pl for a w x h image of subsamp; returns the bytes it needs. */
static size_t
snap_planes_size(struct snap_planes *pl, int w, int h, int subsamp)
{
  /* Chroma subsampling factors: the MCU is 8, 16 or 32 pixels. */
  int fx = tjMCUWidth[subsamp] / 8;
  int fy = tjMCUHeight[subsamp] / 8;
  size_t total = 0;

  memset(pl, 0, sizeof(*pl));
  pl->n = subsamp == TJSAMP_GRAY ? 1 : 3;
  pl->subsamp = subsamp;
  for (int c = 0; c < pl->n; c++) {
    pl->w[c] = c ? (w + fx - 1) / fx : w;
    pl->h[c] = c ? (h + fy - 1) / fy : h;
    pl->stride[c] = tjPlaneWidth(c, w, subsamp);
    pl->rows[c] = tjPlaneHeight(c, h, subsamp);
    total += (size_t)pl->stride[c] * (size_t)pl->rows[c];
  }
  return total;
}

/* Points pl's planes into mem, one after the other; returns the end. */
static unsigned char *
snap_planes_place(struct snap_planes *pl, unsigned char *mem)
{
  for (int c = 0; c < pl->n; c++) {
    pl->p[c] = mem;
    mem += (size_t)pl->stride[c] * (size_t)pl->rows[c];
  }
  return mem;
}

/* Decodes the JPEG into pl (sized for its scaled size), without colour
 * conversion or chroma upsampling: both would only be undone. */
static int
snap_decode_planes(tjhandle tj, const unsigned char *jpeg, size_t len,
                   struct snap_planes *pl, char *err, size_t errsz)
{
  unsigned char *copy;
  int rc;

  jpeg = snap_with_eoi(jpeg, &len, &copy);
  rc = tjDecompressToYUVPlanes(tj, jpeg, (unsigned long)len, pl->p,
                               pl->w[0], pl->stride, pl->h[0], 0);
  free(copy);
  return snap_tj_check(tj, rc, err, errsz);
}

/* Fills the padding TurboJPEG's plane sizes add (an odd width or height
 * of 4:2:0) with copies of the last column and row. */
static void
snap_plane_pad(struct snap_planes *pl, int c)
{
  unsigned char *p = pl->p[c];
  size_t stride = (size_t)pl->stride[c];

  for (int y = 0; y < pl->h[c]; y++)
    for (int x = pl->w[c]; x < pl->stride[c]; x++)
      p[(size_t)y * stride + (size_t)x] = p[(size_t)y * stride +
                                            (size_t)pl->w[c] - 1];
  for (int y = pl->h[c]; y < pl->rows[c]; y++)
    memcpy(p + (size_t)y * stride, p + (size_t)(pl->h[c] - 1) * stride,
           stride);
}

/* Resizes every plane of in into out. */
static void
snap_planes_resize(const struct snap_planes *in, struct snap_planes *out)
{
  for (int c = 0; c < out->n; c++) {
    snapshot_resize(in->p[c], in->w[c], in->h[c], (size_t)in->stride[c], 1,
                    out->p[c], out->w[c], out->h[c],
                    (size_t)out->stride[c]);
    snap_plane_pad(out, c);
  }
}

/* Encodes pl into a malloc'd JPEG. */
static int
snap_encode(struct snap_planes *pl, int w, int h, int quality,
            unsigned char **out, size_t *outlen, char *err, size_t errsz)
{
  tjhandle tj = tjInitCompress();
  const unsigned char *planes[3] = {pl->p[0], pl->p[1], pl->p[2]};
  unsigned char *jbuf = NULL;
  unsigned long jlen = 0;
  int rc;

  if (tj == NULL)
    fatal("snapshot: tjInitCompress failed");
  rc = tjCompressFromYUVPlanes(tj, planes, w, pl->stride, h, pl->subsamp,
                               &jbuf, &jlen, quality, 0);
  if (rc != 0) {
    snprintf(err, errsz, "cannot encode JPEG (%s)", tjGetErrorStr2(tj));
    tjFree(jbuf);
    tjDestroy(tj);
    return -1;
  }
  *out = xmalloc(jlen);
  memcpy(*out, jbuf, jlen);
  *outlen = jlen;
  tjFree(jbuf);
  tjDestroy(tj);
  return 0;
}

/* The planes are resized one by one, each to its 4:2:0 (or gray) size,
 * whatever the source's subsampling: Cb and Cr of a 4:2:2 or 4:4:4
 * picture simply shrink by more than Y does. */
int
snapshot_jpeg_thumbnail(const unsigned char *jpeg, size_t len, int box_w,
                        int box_h, int quality, unsigned char **out,
                        size_t *outlen, int *out_w, int *out_h, char *err,
                        size_t errsz)
{
  tjhandle tj = tjInitDecompress();
  struct snap_planes in, small;
  tjscalingfactor sf = {1, 1};
  unsigned char *mem = NULL;
  size_t need, cap = 0;
  int w, h, subsamp, cs, tw = 0, th = 0, rc = -1;

  if (tj == NULL)
    fatal("snapshot: tjInitDecompress failed");
  if (snap_header(tj, jpeg, len, &w, &h, &subsamp, &cs, err, errsz) == 0) {
    snapshot_fit(w, h, box_w, box_h, &tw, &th);
    sf.denom = snapshot_scale_denom(w, h, tw, th);
    need = snap_planes_size(&in, TJSCALED(w, sf), TJSCALED(h, sf), subsamp);
    need += snap_planes_size(&small, tw, th,
                             in.n == 1 ? TJSAMP_GRAY : TJSAMP_420);
    mem = snap_scratch_get(need, &cap);
    snap_planes_place(&small, snap_planes_place(&in, mem));
    rc = snap_decode_planes(tj, jpeg, len, &in, err, errsz);
  }
  tjDestroy(tj);
  if (rc == 0) {
    snap_planes_resize(&in, &small);
    if (quality < 1)
      quality = 1;
    if (quality > 100)
      quality = 100;
    rc = snap_encode(&small, tw, th, quality, out, outlen, err, errsz);
  }
  if (mem)
    snap_scratch_put(mem, cap);
  if (rc < 0)
    return -1;
  *out_w = tw;
  *out_h = th;
  return 0;
}

static uint32_t
snap_be32(const unsigned char *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         (uint32_t)p[3];
}

int
snapshot_png_info(const unsigned char *png, size_t len, int *w, int *h,
                  char *err, size_t errsz)
{
  uint32_t pw, ph;

  /* Signature, then IHDR first: length 13, type, width, height. */
  if (png == NULL || len < 33 || memcmp(png, SNAP_PNG_SIG, 8) != 0 ||
      snap_be32(png + 8) != 13 || memcmp(png + 12, "IHDR", 4) != 0) {
    snprintf(err, errsz, "not a PNG");
    return -1;
  }
  pw = snap_be32(png + 16);
  ph = snap_be32(png + 20);
  if (pw == 0 || ph == 0 || pw > SNAPSHOT_MAX_SIDE ||
      ph > SNAPSHOT_MAX_SIDE) {
    snprintf(err, errsz, "PNG of unusable size (%" PRIu32 "x%" PRIu32 ")",
             pw, ph);
    return -1;
  }
  *w = (int)pw;
  *h = (int)ph;
  return 0;
}

/* ---- per-event snapshots and the cache ---- */

static struct snapshot *
snap_new(const char *type, unsigned char *data, size_t len, int w, int h,
         int src_w, int src_h)
{
  struct snapshot *s = xcalloc(1, sizeof(*s));

  s->content_type = type;
  s->data = data;
  s->len = len;
  s->width = w;
  s->height = h;
  s->src_width = src_w;
  s->src_height = src_h;
  s->refs = 1;
  return s;
}

static unsigned char *
snap_copy(const struct attachment *a)
{
  unsigned char *p = xmalloc(a->len ? a->len : 1);

  memcpy(p, a->data, a->len);
  return p;
}

static struct snapshot *
snap_from_jpeg(const struct attachment *a, int box_w, int box_h,
               int quality, char *err, size_t errsz)
{
  unsigned char *out = NULL;
  size_t outlen = 0;
  int w, h, tw, th, subsamp;

  if (snapshot_jpeg_info(a->data, a->len, &w, &h, &subsamp, err,
                         errsz) < 0)
    return NULL;
  if (snapshot_fit(w, h, box_w, box_h, &tw, &th) != 0) {
    snprintf(err, errsz, "JPEG of %dx%d pixels", w, h);
    return NULL;
  }
  if (tw == w && th == h) {
    if (snapshot_jpeg_check(a->data, a->len, &w, &h, err, errsz) < 0)
      return NULL;
    return snap_new("image/jpeg", snap_copy(a), a->len, w, h, w, h);
  }
  if (snapshot_jpeg_thumbnail(a->data, a->len, box_w, box_h, quality, &out,
                              &outlen, &tw, &th, err, errsz) < 0)
    return NULL;
  return snap_new("image/jpeg", out, outlen, tw, th, w, h);
}

static struct snapshot *
snap_from_png(const struct attachment *a, char *err, size_t errsz)
{
  int w, h;

  if (snapshot_png_info(a->data, a->len, &w, &h, err, errsz) < 0)
    return NULL;
  return snap_new("image/png", snap_copy(a), a->len, w, h, w, h);
}

/* Pictures already logged as unusable, so that each is logged once
 * however many backends and retries look at it. */
#define SNAP_LOGGED 64

static pthread_mutex_t snap_log_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  int64_t ev_id;
  int64_t recv_time;
  size_t att;
} snap_logged[SNAP_LOGGED];
static size_t snap_logged_next;

/* Whether attachment att of ev was logged before; remembers it if not.
 * An event without an id (not stored yet) is never remembered. */
static int
snap_logged_before(const struct cam_event *ev, size_t att)
{
  int seen = 0;

  if (ev->id == 0)
    return 0;
  pthread_mutex_lock(&snap_log_lock);
  for (size_t i = 0; i < SNAP_LOGGED && !seen; i++)
    seen = snap_logged[i].ev_id == ev->id &&
           snap_logged[i].recv_time == ev->recv_time &&
           snap_logged[i].att == att;
  if (!seen) {
    snap_logged[snap_logged_next].ev_id = ev->id;
    snap_logged[snap_logged_next].recv_time = ev->recv_time;
    snap_logged[snap_logged_next].att = att;
    snap_logged_next = (snap_logged_next + 1) % SNAP_LOGGED;
  }
  pthread_mutex_unlock(&snap_log_lock);
  return seen;
}

static void
snap_log_bad(const struct cam_event *ev, const struct attachment *a,
             const char *err)
{
  char cam[80], name[80], why[SNAP_ERR_LEN + 16];
  const char *camera = ev->camera ? ev->camera : "";

  if (snap_logged_before(ev, (size_t)(a - ev->att)))
    return;

  log_escape(cam, sizeof(cam), camera, strlen(camera));
  log_escape(name, sizeof(name), a->name, strlen(a->name));
  log_escape(why, sizeof(why), err, strlen(err));
  log_warn("snapshot", "event=%" PRId64 " camera=%s attachment=%s "
           "bytes=%zu error=%s msg=\"picture unusable; left out\"", ev->id,
           cam, name, a->len, why);
}

const struct attachment *
snapshot_first_readable(const struct cam_event *ev)
{
  for (size_t i = 0; i < ev->natt; i++) {
    const struct attachment *a = &ev->att[i];
    const unsigned char *data;
    char err[SNAP_ERR_LEN] = "";
    int jpeg = strcmp(a->content_type, "image/jpeg") == 0;
    int w, h, sub;

    if (!jpeg && strcmp(a->content_type, "image/png") != 0)
      continue;
    data = attachment_data(a);
    if (data == NULL)
      snprintf(err, sizeof(err), "picture file unreadable");
    else if (jpeg ? snapshot_jpeg_info(data, a->len, &w, &h, &sub, err,
                                       sizeof(err)) == 0
                  : snapshot_png_info(data, a->len, &w, &h, err,
                                      sizeof(err)) == 0)
      return a;
    snap_log_bad(ev, a, err);
  }
  return NULL;
}

/* Attachment a fitted into the box, or NULL (logged) when unusable or
 * not a picture. */
static struct snapshot *
snap_from_att(const struct cam_event *ev, const struct attachment *a,
              int box_w, int box_h, int quality)
{
  char err[SNAP_ERR_LEN] = "";
  struct snapshot *s;
  int jpeg = strcmp(a->content_type, "image/jpeg") == 0;

  if (!jpeg && strcmp(a->content_type, "image/png") != 0)
    return NULL;
  if (attachment_data(a) == NULL)
    s = NULL, snprintf(err, sizeof(err), "picture file unreadable");
  else if (jpeg)
    s = snap_from_jpeg(a, box_w, box_h, quality, err, sizeof(err));
  else
    s = snap_from_png(a, err, sizeof(err));
  if (s == NULL) {
    snap_log_bad(ev, a, err);
    return NULL;
  }
  log_debug("snapshot", "event=%" PRId64 " from=%dx%d to=%dx%d bytes=%zu",
            ev->id, s->src_width, s->src_height, s->width, s->height,
            s->len);
  return s;
}

/* Attachment att of ev (SNAP_FIRST: the first usable picture), fitted
 * into the box. */
static struct snapshot *
snap_make(const struct cam_event *ev, size_t att, int box_w, int box_h,
          int quality)
{
  if (att != SNAP_FIRST)
    return att < ev->natt ? snap_from_att(ev, &ev->att[att], box_w, box_h,
                                          quality)
                          : NULL;
  for (size_t i = 0; i < ev->natt; i++) {
    struct snapshot *s = snap_from_att(ev, &ev->att[i], box_w, box_h,
                                       quality);

    if (s)
      return s;
  }
  return NULL;
}

static void
snap_free(struct snapshot *s)
{
  free(s->data);
  free(s);
}

/* Under snap_lock. */
static void
snap_drop(struct snapshot *s)
{
  if (s && --s->refs == 0)
    snap_free(s);
}

/* Under snap_lock. */
static void
snap_evict(size_t i)
{
  struct snap_entry *e = &snap_cache[i];

  if (e->snap)
    snap_bytes -= e->snap->len;
  snap_drop(e->snap);
  snap_cache[i] = snap_cache[--snap_n];
}

/* Under snap_lock. */
static void
snap_insert(const struct cam_event *ev, size_t att, int box_w, int box_h,
            int quality, struct snapshot *s)
{
  size_t len = s ? s->len : 0;
  struct snap_entry *e;

  if (len > SNAPSHOT_CACHE_BYTES)
    return;
  while (snap_n > 0 && (snap_n == SNAPSHOT_CACHE_ENTRIES ||
                        snap_bytes + len > SNAPSHOT_CACHE_BYTES)) {
    size_t lru = 0;

    for (size_t i = 1; i < snap_n; i++)
      if (snap_cache[i].used < snap_cache[lru].used)
        lru = i;
    snap_evict(lru);
  }
  e = &snap_cache[snap_n++];
  e->ev_id = ev->id;
  e->recv_time = ev->recv_time;
  e->box_w = box_w;
  e->box_h = box_h;
  e->quality = quality;
  e->att = att;
  e->snap = s;
  e->used = ++snap_tick;
  if (s) {
    s->refs++;
    snap_bytes += len;
  }
}

/* Under snap_lock. Returns the entry, or NULL. */
static struct snap_entry *
snap_lookup(const struct cam_event *ev, size_t att, int box_w, int box_h,
            int quality)
{
  for (size_t i = 0; i < snap_n; i++) {
    struct snap_entry *e = &snap_cache[i];

    if (e->ev_id == ev->id && e->recv_time == ev->recv_time &&
        e->box_w == box_w && e->box_h == box_h && e->quality == quality &&
        e->att == att) {
      e->used = ++snap_tick;
      return e;
    }
  }
  return NULL;
}

static struct snapshot *
snap_get(const struct cam_event *ev, size_t att, int box_w, int box_h,
         int quality)
{
  struct snap_entry *e;
  struct snapshot *s;

  if (box_w < 0)
    box_w = 0;
  if (box_h < 0)
    box_h = 0;
  if (box_w == 0 && box_h == 0)
    quality = 0;
  pthread_mutex_lock(&snap_lock);
  e = ev->id ? snap_lookup(ev, att, box_w, box_h, quality) : NULL;
  if (e) {
    s = e->snap;
    if (s)
      s->refs++;
    pthread_mutex_unlock(&snap_lock);
    return s;
  }
  /* Made under the lock: two backends asking at once wait for one
   * thumbnail instead of making two. */
  s = snap_make(ev, att, box_w, box_h, quality);
  if (ev->id)
    snap_insert(ev, att, box_w, box_h, quality, s);
  pthread_mutex_unlock(&snap_lock);
  return s;
}

struct snapshot *
snapshot_get(const struct cam_event *ev, int box_w, int box_h, int quality)
{
  return snap_get(ev, SNAP_FIRST, box_w, box_h, quality);
}

struct snapshot *
snapshot_get_attachment(const struct cam_event *ev, size_t i, int box_w,
                        int box_h, int quality)
{
  if (i >= ev->natt)
    return NULL;
  return snap_get(ev, i, box_w, box_h, quality);
}

struct snapshot *
snapshot_ref(struct snapshot *s)
{
  if (s == NULL)
    return NULL;
  pthread_mutex_lock(&snap_lock);
  s->refs++;
  pthread_mutex_unlock(&snap_lock);
  return s;
}

void
snapshot_unref(struct snapshot *s)
{
  if (s == NULL)
    return;
  pthread_mutex_lock(&snap_lock);
  snap_drop(s);
  pthread_mutex_unlock(&snap_lock);
}

void
snapshot_cache_clear(void)
{
  pthread_mutex_lock(&snap_lock);
  while (snap_n > 0)
    snap_evict(snap_n - 1);
  snap_bytes = 0;
  pthread_mutex_unlock(&snap_lock);
  free(snap_scratch);
  snap_scratch = NULL;
  snap_scratch_cap = 0;
}

void
snapshot_cache_stats(size_t *entries, size_t *bytes)
{
  pthread_mutex_lock(&snap_lock);
  *entries = snap_n;
  *bytes = snap_bytes;
  pthread_mutex_unlock(&snap_lock);
}
