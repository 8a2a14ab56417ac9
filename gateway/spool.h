/* spool.h - durability: SQLite in WAL mode, with group commit.
 *
 * One writer thread owns every write. Sessions hand it finished events; it
 * gathers what has queued up, writes all of it in one transaction with one
 * fsync (synchronous=FULL), and only then tells each session, through the
 * main loop, that its event is stored, so the session can send the camera
 * its OK. The main thread reads (due deliveries, events) on a connection of
 * its own; WAL lets readers and the writer proceed together.
 *
 * Tables: events, attachments (the data in the row, or in a file under
 * att/ beside the database when large; the row with seq -1 is the
 * camera's own message, ev->raw, kept only when an e-mail backend is in
 * mode forward), deliveries (one per event and
 * backend: state, phase, attempts, next try, last error, the rule that
 * sent it and what rate limits folded into it), ratelimits (the
 * limiter's state per camera and backend, see gateway/ratelimit.h).
 *
 * The writer runs the rate limiter on an event's notification deliveries
 * in the transaction that stores the event: a delivery held back gets
 * the state DELIVERY_HELD; one that is a summary stays pending with its
 * next try at the summary's time. */
#ifndef CAMGATE_SPOOL_H
#define CAMGATE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "gateway/event.h"
#include "gateway/router.h"

struct spool;
struct notify;

enum delivery_state {
  DELIVERY_PENDING,
  DELIVERY_DONE,
  DELIVERY_FAILED,
  DELIVERY_HELD             /* held back by a rate limit; never sent */
};

struct delivery {
  int64_t id;
  int64_t event_id;
  int phase;
  int attempts;
};

/* Called on the main loop thread. ok is 1 when stored; event_id is the new
 * event's id (0 when ok is 0 or the event was a duplicate). */
typedef void (*spool_stored_fn)(void *arg, int ok, int64_t event_id);
typedef void (*spool_written_fn)(void *arg, int ok);

/* Opens (creating) dir/spool.db and starts the writer. n receives the
 * completions. Returns NULL with a reason in err. */
struct spool *spool_open(const char *dir, struct notify *n, char *err,
                         size_t errsz);
/* Writes what is queued, stops the writer, closes. NULL is fine. */
void spool_close(struct spool *sp);

/* Queues ev (ownership passes to the spool) with one delivery per route,
 * for the next group commit; routes to notification backends go through
 * their rate limits there. stored(arg, ...) follows on the main loop.
 * routes' strings are copied and their zone referenced. */
void spool_submit(struct spool *sp, struct cam_event *ev,
                  const struct route *routes, size_t nroutes,
                  spool_stored_fn stored, void *arg);

/* Queues a delivery update; written(arg, ok) follows (fn may be NULL). */
void spool_update_delivery(struct spool *sp, int64_t delivery_id,
                           enum delivery_state st, int phase, int attempts,
                           int64_t next_try_ms, const char *error,
                           spool_written_fn written, void *arg);

/* Queues removal of events older than retention_s whose deliveries are all
 * finished, with their attachments. */
void spool_prune(struct spool *sp, int64_t retention_s);

/* Queues giving up (DELIVERY_FAILED, logged) every pending delivery of a
 * backend not among names: one removed from the config would otherwise
 * keep its alerts in the spool for ever, and send them, long stale, if a
 * backend of that name came back. */
void spool_drop_backends_except(struct spool *sp, const char *const *names,
                                size_t n);

/* Main thread reads. spool_due fills out with up to max pending deliveries
 * of backend whose next try is due at now_ms, oldest event first, skipping
 * ids in busy (nbusy). Returns the count, or -1 on error. */
int spool_due(struct spool *sp, const char *backend, int64_t now_ms,
              const int64_t *busy, size_t nbusy, struct delivery *out,
              size_t max);
/* Earliest next try among pending deliveries of backend; INT64_MAX when
 * none. */
int64_t spool_next_due(struct spool *sp, const char *backend);
/* Loads an event with its attachments; NULL when gone. Caller frees. */
struct cam_event *spool_load_event(struct spool *sp, int64_t id);
/* Loads the event of a delivery with what the delivery carries filled in:
 * rule, folded and folded_since; its attachments and raw mail only when
 * media is set. NULL when gone. Caller frees. */
struct cam_event *spool_load_delivery(struct spool *sp,
                                      int64_t delivery_id, int media);
/* Number of pending deliveries for backend, or of all when NULL. */
long spool_pending(struct spool *sp, const char *backend);

/* Writer-side failure injection for tests: when the file named by
 * CAMGATE_SPOOL_FAIL exists, commits fail as if the disk were full. */

#endif
