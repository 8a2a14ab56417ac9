/* backend.h - the interface every delivery backend implements.
 *
 * The delivery scheduler (gateway/delivery.c) owns the spool side: it picks
 * due deliveries in event order, loads each event and hands it to the
 * backend's deliver(). The backend answers once, through done(), on the main
 * loop thread. A delivery may take several phases (MQTT: phase 0 publishes
 * ON, phase 1 the gateway-made OFF after the hold): DELIVER_LATER asks to be
 * called again with next_phase after delay_ms. Only phase 0 gets the event's
 * attachments and raw mail; later phases get its fields alone. */
#ifndef CAMGATE_BACKEND_H
#define CAMGATE_BACKEND_H

#include <stdint.h>

#include "config/config.h"
#include "gateway/event.h"

struct event_base;
struct notify;

enum deliver_status {
  DELIVER_DONE,      /* delivered; the delivery is finished */
  DELIVER_RETRY,     /* transient failure; retry with backoff */
  DELIVER_FAILED,    /* permanent failure; keep the error, stop */
  DELIVER_LATER      /* go on at next_phase after delay_ms */
};

typedef void (*deliver_done_fn)(void *ctx, enum deliver_status st,
                                int next_phase, int64_t delay_ms,
                                const char *error);

/* The gateway's hook for a backend that needs a person: stores a notice
 * (gateway/notice.h) of kind with title and text for every other
 * configured backend. Runs on the loop thread; copies its strings. */
typedef void (*backend_notice_fn)(void *arg, const char *kind,
                                  const char *title, const char *text);

struct backend_ops {
  const char *type;
  /* Returns the backend state, or NULL with a reason in err. bc and cfg
   * stay valid until close(). */
  void *(*open)(const struct backend_conf *bc, const struct config *cfg,
                struct event_base *base, struct notify *n, char *err,
                size_t errsz);
  /* How many deliveries may be in flight now: 0 while disconnected. */
  int (*capacity)(void *b);
  /* Starts delivering ev (read-only, valid until done() is called). done
   * is called exactly once, never from inside deliver() itself. */
  void (*deliver)(void *b, const struct cam_event *ev, int phase,
                  deliver_done_fn done, void *ctx);
  /* Returns 1 when nothing is in flight (for shutdown). */
  int (*idle)(void *b);
  /* Fails what is in flight with DELIVER_RETRY, then frees. */
  void (*close)(void *b);
  /* Optional (NULL: the backend sends no notices). Called right after
   * open() with the hook, valid until close(). */
  void (*set_notice)(void *b, backend_notice_fn fn, void *arg);
  /* Optional (NULL: the backend keeps using what open() had). After a
   * reload that left the backend's conf unchanged: bc, equal to the one
   * open() had, and cfg are the new config's; the old ones stay valid
   * until close(). */
  void (*reconfigure)(void *b, const struct backend_conf *bc,
                      const struct config *cfg);
};

/* Returns the ops for a backend type; for e-mail and ntfy that opens
 * camgate-http.so the first time (gateway/module.h). NULL, with the
 * reason in err (when err is not NULL), if it cannot. */
const struct backend_ops *backend_ops_for(enum backend_type type,
                                          char *err, size_t errsz);

extern const struct backend_ops mqtt_backend_ops;
/* In camgate-http.so. */
extern const struct backend_ops email_backend_ops;
extern const struct backend_ops ntfy_backend_ops;

#endif
