/* snapshot.h - a camera's picture, checked and made small.
 *
 * Cameras attach JPEGs of any size (a 4K frame is 1-3 MB) and now and
 * then a broken one (cut short by a full buffer, or not a JPEG at all).
 * Backends that want a picture ask snapshot_get() for the event's
 * snapshot fitted into a box: the first JPEG or PNG attachment that is
 * usable, as a JPEG of the largest size within the box (aspect ratio
 * kept, never enlarged), or the original bytes when they already fit.
 *
 * A JPEG is usable when its header reads and the whole image decodes
 * (a warning other than stray bytes between markers counts as broken).
 * Thumbnails use TurboJPEG's scaled decoding (1/2, 1/4 or 1/8: the
 * smallest that is still at least the target size) and then
 * snapshot_resize() for the last step. PNGs are passed through as they
 * are; only their header is checked.
 *
 * Results are kept in a small in-memory cache (SNAPSHOT_CACHE_ENTRIES
 * entries, SNAPSHOT_CACHE_BYTES bytes, least recently used out first)
 * keyed by event id, receive time, box, quality (and attachment, for
 * snapshot_get_attachment()), so a thumbnail is
 * made once per event and size however many backends ask for it, and
 * also across a delivery's retries. "No usable picture" is cached too. */
#ifndef CAMGATE_SNAPSHOT_H
#define CAMGATE_SNAPSHOT_H

#include <stddef.h>

#include "gateway/event.h"

#define SNAPSHOT_MAX_SIDE 16384           /* pixels; larger is refused */
#define SNAPSHOT_MAX_PIXELS (100L * 1000 * 1000)
#define SNAPSHOT_CACHE_ENTRIES 32
#define SNAPSHOT_CACHE_BYTES (16u * 1024 * 1024)

struct snapshot {
  const char *content_type;   /* "image/jpeg" or "image/png" */
  unsigned char *data;
  size_t len;
  int width;                  /* of data */
  int height;
  int src_width;              /* of the attachment it came from */
  int src_height;
  int refs;                   /* snapshot.c's own */
};

/* Writes into *out_w, *out_h the largest size within box_w x box_h with
 * the aspect ratio of w x h, never larger than w x h (a box side <= 0 is
 * no limit). Each side is at least 1. Returns 0, or -1 when w or h is
 * not positive. */
int snapshot_fit(int w, int h, int box_w, int box_h, int *out_w,
                 int *out_h);

/* Returns the denominator (8, 4, 2 or 1) of the largest scaled decoding
 * of a w x h JPEG whose size is still at least tw x th. */
int snapshot_scale_denom(int w, int h, int tw, int th);

/* Scales src (sw x sh pixels of ch bytes each, rows spitch bytes apart)
 * to dst (dw x dh, rows dpitch apart) by area averaging: every
 * destination pixel is the mean of the source area it covers. Meant for
 * shrinking; enlarging works but only blends neighbours. */
void snapshot_resize(const unsigned char *src, int sw, int sh,
                     size_t spitch, int ch, unsigned char *dst, int dw,
                     int dh, size_t dpitch);

/* Reads a JPEG's header: size and TurboJPEG subsampling (TJSAMP_*).
 * Returns 0, or -1 with the reason in err. */
int snapshot_jpeg_info(const unsigned char *jpeg, size_t len, int *w,
                       int *h, int *subsamp, char *err, size_t errsz);

/* Decodes the whole JPEG (at 1/8 scale, which still reads every
 * coefficient) to prove it is usable. Returns 0 and its size, or -1 with
 * the reason in err. */
int snapshot_jpeg_check(const unsigned char *jpeg, size_t len, int *w,
                        int *h, char *err, size_t errsz);

/* Makes a JPEG of quality 1..100 that fits box_w x box_h from a JPEG
 * (re-encoded even when it already fits; grayscale stays grayscale,
 * colour is 4:2:0). On success returns 0 with *out (malloc'd; the caller
 * frees it), its length and size; on failure -1 with the reason in err
 * and nothing to free. */
int snapshot_jpeg_thumbnail(const unsigned char *jpeg, size_t len,
                            int box_w, int box_h, int quality,
                            unsigned char **out, size_t *outlen,
                            int *out_w, int *out_h, char *err,
                            size_t errsz);

/* Reads a PNG's size from its IHDR. Returns 0, or -1 with err. */
int snapshot_png_info(const unsigned char *png, size_t len, int *w, int *h,
                      char *err, size_t errsz);

/* Returns ev's snapshot fitted into box_w x box_h at quality (a box of
 * 0 x 0: the original, checked), or NULL when the event has no usable
 * picture (each broken attachment is logged once per box). The caller
 * owns one reference and drops it with snapshot_unref(). Any thread
 * may call it; the cache has its own lock. */
struct snapshot *snapshot_get(const struct cam_event *ev, int box_w,
                              int box_h, int quality);

/* The same for attachment i of ev only (the e-mail backend thumbnails
 * each large picture it attaches): NULL when i is not a usable JPEG or
 * PNG. Cached apart from snapshot_get()'s entries. */
struct snapshot *snapshot_get_attachment(const struct cam_event *ev,
                                         size_t i, int box_w, int box_h,
                                         int quality);

/* The first attachment of ev that is a JPEG or PNG whose header reads
 * (size, colour space and limits as snapshot_get() demands), without
 * decoding it: for a backend that sends the camera's bytes as they
 * came. Each picture refused on the way is logged. NULL: none. */
const struct attachment *snapshot_first_readable(const struct cam_event *ev);

struct snapshot *snapshot_ref(struct snapshot *s);
/* Drops a reference; frees at zero. NULL is fine. */
void snapshot_unref(struct snapshot *s);

/* Empties the cache and frees the calling thread's scratch memory (the
 * planes of its last thumbnail, kept to spare the next one the page
 * faults): at shutdown, and for tests. */
void snapshot_cache_clear(void);
/* Entries and bytes the cache holds now. */
void snapshot_cache_stats(size_t *entries, size_t *bytes);

#endif
