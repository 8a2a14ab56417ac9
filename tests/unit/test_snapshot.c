/* test_snapshot.c - JPEG checks, thumbnails and the snapshot cache.
 *
 * Every input JPEG is made here with TurboJPEG's own compressor: a colour
 * gradient (red across, green down) in each subsampling, grayscale and
 * progressive, so the thumbnail's colours can be checked against where
 * its pixels came from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/snapshot.h"

struct jpeg {
  unsigned char *data;
  size_t len;
};

static int
grad_r(int x, int w)
{
  return w > 1 ? x * 255 / (w - 1) : 0;
}

static int
grad_g(int y, int h)
{
  return h > 1 ? y * 255 / (h - 1) : 0;
}

/* A w x h gradient as a JPEG of the given subsampling and flags. */
static struct jpeg
make_jpeg(int w, int h, int samp, int flags)
{
  int pf = samp == TJSAMP_GRAY ? TJPF_GRAY : TJPF_RGB;
  int ps = tjPixelSize[pf];
  unsigned char *pix = malloc((size_t)w * (size_t)h * (size_t)ps);
  unsigned char *buf = NULL;
  unsigned long len = 0;
  struct jpeg j;
  tjhandle tj = tjInitCompress();

  assert_non_null(pix);
  assert_non_null(tj);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) {
      unsigned char *p = pix + ((size_t)y * (size_t)w + (size_t)x) *
                                 (size_t)ps;

      if (pf == TJPF_GRAY) {
        p[0] = (unsigned char)grad_r(x, w);
        continue;
      }
      p[0] = (unsigned char)grad_r(x, w);
      p[1] = (unsigned char)grad_g(y, h);
      p[2] = 128;
    }
  }
  assert_int_equal(tjCompress2(tj, pix, w, 0, h, pf, &buf, &len, samp, 90,
                               flags), 0);
  j.data = malloc(len);
  assert_non_null(j.data);
  memcpy(j.data, buf, len);
  j.len = len;
  tjFree(buf);
  tjDestroy(tj);
  free(pix);
  return j;
}

/* Decodes a thumbnail to RGB (or gray) and checks size and subsampling. */
static unsigned char *
decode_check(const unsigned char *data, size_t len, int want_w, int want_h,
             int *samp, int pf)
{
  tjhandle tj = tjInitDecompress();
  int w, h, cs;
  unsigned char *pix;

  assert_non_null(tj);
  assert_int_equal(tjDecompressHeader3(tj, data, (unsigned long)len, &w, &h,
                                       samp, &cs), 0);
  assert_int_equal(w, want_w);
  assert_int_equal(h, want_h);
  pix = malloc((size_t)w * (size_t)h * (size_t)tjPixelSize[pf]);
  assert_non_null(pix);
  assert_int_equal(tjDecompress2(tj, data, (unsigned long)len, pix, w, 0, h,
                                 pf, 0), 0);
  tjDestroy(tj);
  return pix;
}

static void
assert_near(int got, int want, int tol)
{
  if (abs(got - want) > tol)
    fail_msg("got %d, wanted %d +- %d", got, want, tol);
}

/* ---- sizes ---- */

static void
test_fit(void **state)
{
  int w, h;

  (void)state;
  assert_int_equal(snapshot_fit(1920, 1080, 640, 480, &w, &h), 0);
  assert_int_equal(w, 640);
  assert_int_equal(h, 360);
  snapshot_fit(1080, 1920, 640, 480, &w, &h);
  assert_int_equal(w, 270);
  assert_int_equal(h, 480);
  snapshot_fit(2560, 1920, 640, 480, &w, &h);
  assert_int_equal(w, 640);
  assert_int_equal(h, 480);
  snapshot_fit(1000, 1000, 640, 480, &w, &h);
  assert_int_equal(w, 480);
  assert_int_equal(h, 480);
  /* Never larger than the picture. */
  snapshot_fit(320, 240, 640, 480, &w, &h);
  assert_int_equal(w, 320);
  assert_int_equal(h, 240);
  snapshot_fit(640, 480, 640, 480, &w, &h);
  assert_int_equal(w, 640);
  assert_int_equal(h, 480);
  snapshot_fit(641, 481, 640, 480, &w, &h);
  assert_true(w <= 640 && h <= 480);
  assert_int_equal(h, 480);
  /* A sliver keeps a side of at least one pixel. */
  snapshot_fit(1, 10000, 640, 480, &w, &h);
  assert_int_equal(w, 1);
  assert_int_equal(h, 480);
  snapshot_fit(3000, 2000, 0, 0, &w, &h);
  assert_int_equal(w, 3000);
  assert_int_equal(h, 2000);
  snapshot_fit(3000, 2000, 300, 0, &w, &h);
  assert_int_equal(w, 300);
  assert_int_equal(h, 200);
  assert_int_equal(snapshot_fit(0, 10, 640, 480, &w, &h), -1);
}

static void
test_scale_denom(void **state)
{
  (void)state;
  assert_int_equal(snapshot_scale_denom(1920, 1080, 640, 360), 2);
  assert_int_equal(snapshot_scale_denom(3840, 2160, 640, 360), 4);
  assert_int_equal(snapshot_scale_denom(5120, 2880, 640, 360), 8);
  assert_int_equal(snapshot_scale_denom(4000, 3000, 640, 480), 4);
  assert_int_equal(snapshot_scale_denom(1280, 720, 640, 360), 2);
  assert_int_equal(snapshot_scale_denom(1279, 720, 640, 360), 2);
  assert_int_equal(snapshot_scale_denom(1277, 719, 640, 360), 1);
  assert_int_equal(snapshot_scale_denom(700, 500, 640, 480), 1);
  assert_int_equal(snapshot_scale_denom(640, 480, 640, 480), 1);
}

/* ---- the resize ---- */

static void
test_resize_uniform(void **state)
{
  unsigned char src[7 * 5 * 3], dst[3 * 2 * 3];

  (void)state;
  for (size_t i = 0; i < sizeof(src); i += 3) {
    src[i] = 200;
    src[i + 1] = 10;
    src[i + 2] = 255;
  }
  snapshot_resize(src, 7, 5, 7 * 3, 3, dst, 3, 2, 3 * 3);
  for (size_t i = 0; i < sizeof(dst); i += 3) {
    assert_int_equal(dst[i], 200);
    assert_int_equal(dst[i + 1], 10);
    assert_int_equal(dst[i + 2], 255);
  }
}

static void
test_resize_area(void **state)
{
  /* 4x2 gray to 2x1: each output is the mean of a 2x2 block. */
  const unsigned char src[] = {0, 100, 10, 20, 50, 250, 30, 40};
  /* 3x1 to 2x1: output 0 is (a + b/2) / 1.5, output 1 (b/2 + c) / 1.5. */
  const unsigned char row[] = {30, 90, 150};
  unsigned char dst[2];

  (void)state;
  snapshot_resize(src, 4, 2, 4, 1, dst, 2, 1, 2);
  assert_near(dst[0], (0 + 100 + 50 + 250) / 4, 1);
  assert_near(dst[1], (10 + 20 + 30 + 40) / 4, 1);
  snapshot_resize(row, 3, 1, 3, 1, dst, 2, 1, 2);
  assert_near(dst[0], 50, 1);
  assert_near(dst[1], 130, 1);
}

static void
test_resize_pitch(void **state)
{
  /* Rows with padding at their ends: the padding must not leak in. */
  unsigned char src[2 * 8];
  unsigned char dst[1 * 4];

  (void)state;
  memset(src, 255, sizeof(src));
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 4; x++)
      src[y * 8 + x] = 60;
  memset(dst, 0, sizeof(dst));
  snapshot_resize(src, 4, 2, 8, 1, dst, 1, 1, 4);
  assert_int_equal(dst[0], 60);
  assert_int_equal(dst[1], 0);
}

/* ---- thumbnails ---- */

/* Makes a w x h JPEG, thumbnails it into the box and checks the size,
 * the subsampling and that the gradient is still where it was. */
static void
thumb_case(int w, int h, int samp, int flags, int box_w, int box_h,
           int want_w, int want_h)
{
  struct jpeg j = make_jpeg(w, h, samp, flags);
  int gray = samp == TJSAMP_GRAY;
  int pf = gray ? TJPF_GRAY : TJPF_RGB;
  unsigned char *out = NULL, *pix;
  size_t outlen = 0;
  char err[160] = "";
  int tw = 0, th = 0, got_samp = -1;
  int ps = tjPixelSize[pf];

  if (snapshot_jpeg_thumbnail(j.data, j.len, box_w, box_h, 80, &out,
                              &outlen, &tw, &th, err, sizeof(err)) != 0)
    fail_msg("thumbnail of %dx%d failed: %s", w, h, err);
  assert_int_equal(tw, want_w);
  assert_int_equal(th, want_h);
  assert_true(outlen > 100);
  pix = decode_check(out, outlen, want_w, want_h, &got_samp, pf);
  assert_int_equal(got_samp, gray ? TJSAMP_GRAY : TJSAMP_420);
  /* Sample points away from the edges: red follows x, green follows y. */
  for (int k = 1; k < 4; k++) {
    int x = tw * k / 4;
    int y = th * k / 4;
    const unsigned char *p = pix + ((size_t)y * (size_t)tw + (size_t)x) *
                                     (size_t)ps;
    int want_r = (2 * x + 1) * 255 / (2 * tw);

    assert_near(p[0], want_r, 12);
    if (!gray) {
      assert_near(p[1], (2 * y + 1) * 255 / (2 * th), 12);
      assert_near(p[2], 128, 12);
    }
  }
  free(pix);
  free(out);
  free(j.data);
}

static void
test_thumb_420(void **state)
{
  (void)state;
  thumb_case(1920, 1080, TJSAMP_420, 0, 640, 480, 640, 360);
}

static void
test_thumb_422(void **state)
{
  (void)state;
  thumb_case(1280, 960, TJSAMP_422, 0, 640, 480, 640, 480);
}

static void
test_thumb_444(void **state)
{
  (void)state;
  thumb_case(1000, 750, TJSAMP_444, 0, 320, 240, 320, 240);
}

static void
test_thumb_gray(void **state)
{
  (void)state;
  thumb_case(1600, 1200, TJSAMP_GRAY, 0, 640, 480, 640, 480);
}

static void
test_thumb_progressive(void **state)
{
  struct jpeg j = make_jpeg(64, 64, TJSAMP_420, TJFLAG_PROGRESSIVE);
  int sof2 = 0;

  (void)state;
  /* Really progressive: a SOF2 marker. */
  for (size_t i = 0; i + 1 < j.len; i++)
    sof2 |= j.data[i] == 0xFF && j.data[i + 1] == 0xC2;
  assert_true(sof2);
  free(j.data);
  thumb_case(1920, 1080, TJSAMP_420, TJFLAG_PROGRESSIVE, 640, 480, 640,
             360);
}

static void
test_thumb_portrait_and_odd(void **state)
{
  (void)state;
  /* Portrait: the height is what hits the box. */
  thumb_case(1080, 1920, TJSAMP_420, 0, 640, 480, 270, 480);
  /* Odd sizes that no scale divides. */
  thumb_case(1001, 777, TJSAMP_422, 0, 333, 333, 333, 258);
}

static void
test_thumb_no_upscale(void **state)
{
  (void)state;
  thumb_case(320, 240, TJSAMP_420, 0, 640, 480, 320, 240);
  thumb_case(200, 600, TJSAMP_444, 0, 640, 480, 160, 480);
}

static void
test_thumb_quality(void **state)
{
  struct jpeg j = make_jpeg(1280, 720, TJSAMP_420, 0);
  unsigned char *lo = NULL, *hi = NULL;
  size_t lolen = 0, hilen = 0;
  char err[160];
  int w, h;

  (void)state;
  assert_int_equal(snapshot_jpeg_thumbnail(j.data, j.len, 640, 480, 20, &lo,
                                           &lolen, &w, &h, err,
                                           sizeof(err)), 0);
  assert_int_equal(snapshot_jpeg_thumbnail(j.data, j.len, 640, 480, 95, &hi,
                                           &hilen, &w, &h, err,
                                           sizeof(err)), 0);
  assert_true(lolen < hilen);
  free(lo);
  free(hi);
  free(j.data);
}

/* ---- broken input ---- */

static void
assert_bad(const unsigned char *data, size_t len, const char *want)
{
  unsigned char *out = NULL;
  size_t outlen = 0;
  char err[160] = "";
  int w = 0, h = 0;

  assert_int_equal(snapshot_jpeg_check(data, len, &w, &h, err, sizeof(err)),
                   -1);
  if (strstr(err, want) == NULL)
    fail_msg("check: wanted \"%s\" in \"%s\"", want, err);
  err[0] = '\0';
  assert_int_equal(snapshot_jpeg_thumbnail(data, len, 64, 64, 75, &out,
                                           &outlen, &w, &h, err,
                                           sizeof(err)), -1);
  assert_null(out);
  if (strstr(err, want) == NULL)
    fail_msg("thumbnail: wanted \"%s\" in \"%s\"", want, err);
}

static void
test_truncated(void **state)
{
  struct jpeg j = make_jpeg(640, 480, TJSAMP_420, 0);
  struct jpeg p = make_jpeg(640, 480, TJSAMP_420, TJFLAG_PROGRESSIVE);

  (void)state;
  assert_bad(j.data, j.len / 2, "truncated JPEG");
  assert_bad(j.data, j.len - 200, "truncated JPEG");
  assert_bad(p.data, p.len / 2, "truncated JPEG");
  /* Cut inside the header. */
  assert_bad(j.data, 40, "JPEG");
  free(j.data);
  free(p.data);
}

/* Cameras that leave out the final EOI marker send complete pictures. */
static void
test_missing_eoi(void **state)
{
  struct jpeg j = make_jpeg(640, 480, TJSAMP_420, 0);
  unsigned char *out = NULL;
  size_t outlen = 0;
  char err[160] = "";
  int w = 0, h = 0;

  (void)state;
  assert_int_equal(j.data[j.len - 2], 0xFF);
  assert_int_equal(j.data[j.len - 1], 0xD9);
  if (snapshot_jpeg_check(j.data, j.len - 2, &w, &h, err, sizeof(err)))
    fail_msg("no EOI refused: %s", err);
  assert_int_equal(w, 640);
  assert_int_equal(h, 480);
  assert_int_equal(snapshot_jpeg_thumbnail(j.data, j.len - 2, 320, 240, 75,
                                           &out, &outlen, &w, &h, err,
                                           sizeof(err)), 0);
  assert_int_equal(w, 320);
  free(out);
  /* Zero padding after EOI is no damage either. */
  j.data = realloc(j.data, j.len + 64);
  assert_non_null(j.data);
  memset(j.data + j.len, 0, 64);
  assert_int_equal(snapshot_jpeg_check(j.data, j.len + 64, &w, &h, err,
                                       sizeof(err)), 0);
  free(j.data);
}

static void
test_garbage(void **state)
{
  unsigned char junk[4096];
  unsigned char soi[600];
  uint32_t x = 12345;

  (void)state;
  for (size_t i = 0; i < sizeof(junk); i++) {
    x = x * 1103515245u + 12345u;
    junk[i] = (unsigned char)(x >> 16);
  }
  junk[0] = 'G';
  assert_bad(junk, sizeof(junk), "not a JPEG");
  assert_bad(NULL, 0, "not a JPEG");
  assert_bad((const unsigned char *)"\xff\xd8", 2, "not a JPEG");
  /* A JPEG start and then noise. */
  memcpy(soi, junk, sizeof(soi));
  soi[0] = 0xFF;
  soi[1] = 0xD8;
  assert_bad(soi, sizeof(soi), "JPEG");
}

static void
test_corrupt_body(void **state)
{
  struct jpeg j = make_jpeg(640, 480, TJSAMP_420, 0);
  char err[160] = "";
  int w, h, bad = 0;

  (void)state;
  /* Markers in the middle of the scan: the decoder hits them early. */
  for (size_t i = j.len / 3; i < j.len / 3 + 64; i += 2) {
    j.data[i] = 0xFF;
    j.data[i + 1] = 0xD0 + (unsigned char)(i % 8);
  }
  bad = snapshot_jpeg_check(j.data, j.len, &w, &h, err, sizeof(err));
  assert_int_equal(bad, -1);
  assert_non_null(strstr(err, "JPEG"));
  free(j.data);
}

static void
test_too_large(void **state)
{
  struct jpeg j = make_jpeg(16, 16, TJSAMP_420, 0);
  char err[160] = "";
  int w, h, s;

  (void)state;
  /* Patch the SOF0 size to 20000 x 20000. */
  for (size_t i = 0; i + 8 < j.len; i++) {
    if (j.data[i] == 0xFF && j.data[i + 1] == 0xC0) {
      j.data[i + 5] = 20000 >> 8;
      j.data[i + 6] = 20000 & 0xFF;
      j.data[i + 7] = 20000 >> 8;
      j.data[i + 8] = 20000 & 0xFF;
      break;
    }
  }
  assert_int_equal(snapshot_jpeg_info(j.data, j.len, &w, &h, &s, err,
                                      sizeof(err)), -1);
  assert_non_null(strstr(err, "too large"));
  free(j.data);
}

static void
test_png_info(void **state)
{
  static const unsigned char png[33] =
    "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x02\x80\0\0\x01\xe0\x08\x02\0\0\0"
    "\0\0\0\0";
  char err[64];
  int w, h;

  (void)state;
  assert_int_equal(snapshot_png_info(png, sizeof(png), &w, &h, err,
                                     sizeof(err)), 0);
  assert_int_equal(w, 640);
  assert_int_equal(h, 480);
  assert_int_equal(snapshot_png_info(png, 20, &w, &h, err, sizeof(err)),
                   -1);
  assert_int_equal(snapshot_png_info((const unsigned char *)"GIF89a", 6, &w,
                                     &h, err, sizeof(err)), -1);
}

/* ---- snapshot_get and its cache ---- */

static struct cam_event *
event_with(int64_t id, const struct jpeg *j, const char *type)
{
  struct cam_event *ev = cam_event_new();

  ev->id = id;
  ev->recv_time = 1700000000000 + id;
  cam_event_set(&ev->camera, "cam");
  cam_event_add_attachment(ev, "a.txt", "text/plain",
                           (const unsigned char *)"hi", 2);
  if (j)
    cam_event_add_attachment(ev, "snap", type, j->data, j->len);
  return ev;
}

static int
cache_setup(void **state)
{
  (void)state;
  snapshot_cache_clear();
  return 0;
}

static void
test_get_thumbnail_cached(void **state)
{
  struct jpeg j = make_jpeg(1920, 1080, TJSAMP_420, 0);
  struct cam_event *ev = event_with(1, &j, "image/jpeg");
  struct snapshot *a, *b, *c;
  size_t n, bytes;

  (void)state;
  a = snapshot_get(ev, 640, 480, 75);
  assert_non_null(a);
  assert_string_equal(a->content_type, "image/jpeg");
  assert_int_equal(a->width, 640);
  assert_int_equal(a->height, 360);
  assert_int_equal(a->src_width, 1920);
  assert_int_equal(a->src_height, 1080);
  /* The same event and size again: the same thumbnail, not a new one. */
  b = snapshot_get(ev, 640, 480, 75);
  assert_ptr_equal(a, b);
  c = snapshot_get(ev, 320, 240, 75);
  assert_non_null(c);
  assert_ptr_not_equal(a, c);
  assert_int_equal(c->width, 320);
  snapshot_cache_stats(&n, &bytes);
  assert_int_equal(n, 2);
  assert_int_equal(bytes, a->len + c->len);
  snapshot_unref(a);
  snapshot_unref(b);
  snapshot_unref(c);
  /* The cache's own reference keeps it until it is cleared. */
  snapshot_cache_clear();
  snapshot_cache_stats(&n, &bytes);
  assert_int_equal(n, 0);
  assert_int_equal(bytes, 0);
  cam_event_free(ev);
  free(j.data);
}

static void
test_get_small_passes_through(void **state)
{
  struct jpeg j = make_jpeg(320, 240, TJSAMP_422, 0);
  struct cam_event *ev = event_with(2, &j, "image/jpeg");
  struct snapshot *s = snapshot_get(ev, 640, 480, 75);

  (void)state;
  assert_non_null(s);
  assert_int_equal(s->len, j.len);
  assert_memory_equal(s->data, j.data, j.len);
  snapshot_unref(s);
  /* Box 0 x 0 is the original, checked. */
  s = snapshot_get(ev, 0, 0, 0);
  assert_non_null(s);
  assert_memory_equal(s->data, j.data, j.len);
  snapshot_unref(s);
  cam_event_free(ev);
  free(j.data);
}

static void
test_get_png_unchanged(void **state)
{
  /* Signature, IHDR of 1920 x 1080 and IEND: 41 bytes. */
  static const unsigned char png[41] =
    "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\0\x07\x80\0\0\x04\x38\x08\x02\0\0\0"
    "\0\0\0\0IEND\xae\x42\x60\x82";
  struct jpeg p = {(unsigned char *)png, sizeof(png)};
  struct cam_event *ev = event_with(3, &p, "image/png");
  struct snapshot *s = snapshot_get(ev, 640, 480, 75);

  (void)state;
  assert_non_null(s);
  assert_string_equal(s->content_type, "image/png");
  assert_int_equal(s->width, 1920);
  assert_int_equal(s->height, 1080);
  assert_int_equal(s->len, sizeof(png));
  assert_memory_equal(s->data, png, sizeof(png));
  snapshot_unref(s);
  cam_event_free(ev);
}

static void
test_get_corrupt_skipped(void **state)
{
  struct jpeg j = make_jpeg(800, 600, TJSAMP_420, 0);
  struct jpeg cut = {j.data, j.len / 2};
  struct cam_event *ev = event_with(4, &cut, "image/jpeg");
  struct snapshot *s;
  size_t n, bytes;

  (void)state;
  /* Only a truncated picture: none, and "none" is remembered. */
  assert_null(snapshot_get(ev, 640, 480, 75));
  assert_null(snapshot_get(ev, 640, 480, 75));
  snapshot_cache_stats(&n, &bytes);
  assert_int_equal(n, 1);
  assert_int_equal(bytes, 0);
  /* A good one after it is taken instead. */
  cam_event_add_attachment(ev, "good.jpg", "image/jpeg", j.data, j.len);
  ev->id = 5;
  s = snapshot_get(ev, 640, 480, 75);
  assert_non_null(s);
  assert_int_equal(s->src_width, 800);
  assert_int_equal(s->width, 640);
  assert_int_equal(s->height, 480);
  snapshot_unref(s);
  cam_event_free(ev);
  free(j.data);
}

/* What MQTT publishes as sent: the first picture whose header reads. A
 * cut one still does (only decoding finds that); garbage does not. */
static void
test_first_readable(void **state)
{
  struct jpeg j = make_jpeg(320, 240, TJSAMP_420, 0);
  static const unsigned char garbage[] = {0xFF, 0xD8, 0xFF, 0xE0, 0x00,
                                          0x10, 'J', 'F', 'I', 'F', 0x00,
                                          0x01, 0x02, 0x03, 0x04, 0x05};
  struct jpeg bad = {(unsigned char *)garbage, sizeof(garbage)};
  struct jpeg cut = {j.data, j.len / 2};
  struct cam_event *ev = event_with(7, &bad, "image/jpeg");
  static const unsigned char png_bad[] = "\x89PNG\r\n\x1a\nnot-a-header";

  (void)state;
  assert_null(snapshot_first_readable(ev));
  cam_event_add_attachment(ev, "bad.png", "image/png", png_bad,
                           sizeof(png_bad) - 1);
  cam_event_add_attachment(ev, "clip.mp4", "video/mp4",
                           (const unsigned char *)"mp4", 3);
  assert_null(snapshot_first_readable(ev));
  cam_event_add_attachment(ev, "cut.jpg", "image/jpeg", cut.data, cut.len);
  cam_event_add_attachment(ev, "good.jpg", "image/jpeg", j.data, j.len);
  assert_ptr_equal(snapshot_first_readable(ev), &ev->att[4]);
  cam_event_free(ev);
  free(j.data);
}

static void
test_get_no_picture(void **state)
{
  struct cam_event *ev = event_with(6, NULL, NULL);

  (void)state;
  assert_null(snapshot_get(ev, 640, 480, 75));
  cam_event_free(ev);
}

static void
test_cache_bounded(void **state)
{
  struct jpeg j = make_jpeg(160, 120, TJSAMP_420, 0);
  size_t n, bytes;

  (void)state;
  for (int i = 0; i < SNAPSHOT_CACHE_ENTRIES + 10; i++) {
    struct cam_event *ev = event_with(100 + i, &j, "image/jpeg");
    struct snapshot *s = snapshot_get(ev, 640, 480, 75);

    assert_non_null(s);
    snapshot_unref(s);
    cam_event_free(ev);
  }
  snapshot_cache_stats(&n, &bytes);
  assert_int_equal(n, SNAPSHOT_CACHE_ENTRIES);
  assert_int_equal(bytes, SNAPSHOT_CACHE_ENTRIES * j.len);
  assert_true(bytes <= SNAPSHOT_CACHE_BYTES);
  snapshot_cache_clear();
  free(j.data);
}

static void
test_cache_keeps_held_snapshot(void **state)
{
  struct jpeg j = make_jpeg(160, 120, TJSAMP_420, 0);
  struct cam_event *ev = event_with(500, &j, "image/jpeg");
  struct snapshot *s = snapshot_get(ev, 640, 480, 75);

  (void)state;
  /* Evicted while a backend holds it: still readable until unref. */
  snapshot_cache_clear();
  assert_int_equal(s->len, j.len);
  assert_memory_equal(s->data, j.data, j.len);
  snapshot_unref(s);
  cam_event_free(ev);
  free(j.data);
}

static int
group_teardown(void **state)
{
  (void)state;
  snapshot_cache_clear();
  return 0;
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fit),
    cmocka_unit_test(test_scale_denom),
    cmocka_unit_test(test_resize_uniform),
    cmocka_unit_test(test_resize_area),
    cmocka_unit_test(test_resize_pitch),
    cmocka_unit_test(test_thumb_420),
    cmocka_unit_test(test_thumb_422),
    cmocka_unit_test(test_thumb_444),
    cmocka_unit_test(test_thumb_gray),
    cmocka_unit_test(test_thumb_progressive),
    cmocka_unit_test(test_thumb_portrait_and_odd),
    cmocka_unit_test(test_thumb_no_upscale),
    cmocka_unit_test(test_thumb_quality),
    cmocka_unit_test(test_truncated),
    cmocka_unit_test(test_missing_eoi),
    cmocka_unit_test(test_garbage),
    cmocka_unit_test(test_corrupt_body),
    cmocka_unit_test(test_too_large),
    cmocka_unit_test(test_png_info),
    cmocka_unit_test_setup(test_get_thumbnail_cached, cache_setup),
    cmocka_unit_test_setup(test_get_small_passes_through, cache_setup),
    cmocka_unit_test_setup(test_get_png_unchanged, cache_setup),
    cmocka_unit_test_setup(test_get_corrupt_skipped, cache_setup),
    cmocka_unit_test_setup(test_get_no_picture, cache_setup),
    cmocka_unit_test(test_first_readable),
    cmocka_unit_test_setup(test_cache_bounded, cache_setup),
    cmocka_unit_test_setup(test_cache_keeps_held_snapshot, cache_setup),
  };

  log_set_level(LOGL_ERROR);
  return cmocka_run_group_tests(tests, NULL, group_teardown);
}
