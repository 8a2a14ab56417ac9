/* delivery.h - moves stored events to the backends.
 *
 * One scheduler, one queue per backend read from the spool: each backend
 * takes its due deliveries oldest event first, as many as it has room for,
 * so a slow or dead backend never holds up another. A transient failure
 * backs the whole backend off exponentially (retry_initial doubling up to
 * retry_max), which keeps a camera's alerts in order; a permanent one
 * keeps the backend's error on the delivery. */
#ifndef CAMGATE_DELIVERY_H
#define CAMGATE_DELIVERY_H

#include <stdint.h>

#include "config/config.h"

struct event_base;
struct notify;
struct spool;
struct delivery_sched;

/* Opens every backend of cfg. A backend that cannot open is logged and
 * left out; its deliveries wait in the spool. */
struct delivery_sched *delivery_new(struct event_base *base,
                                    struct spool *sp, struct notify *n,
                                    struct config *cfg);
/* Reopens the backends from cfg. */
void delivery_reload(struct delivery_sched *ds, struct config *cfg);
/* Something new may be due: look now rather than at the next tick. */
void delivery_kick(struct delivery_sched *ds);
/* Deliveries in flight. */
int delivery_inflight(const struct delivery_sched *ds);
/* Closes the backends (what is in flight is retried later). The
 * scheduler's memory stays until delivery_free, since the spool may still
 * answer its last updates. */
void delivery_close(struct delivery_sched *ds);
void delivery_free(struct delivery_sched *ds);

#endif
