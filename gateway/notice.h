/* notice.h - camgate's own notices, sent through the backends.
 *
 * When something needs a person (an OAuth backend whose refresh token
 * was refused), camgate tells the people who read its alerts through
 * the other configured backends. A notice is a synthetic event: source,
 * camera and camera name "camgate", the kind given ("needs_login"), a
 * title and a text. It is stored in the spool like an alert, with a
 * route to every configured backend but the one it is about, so it
 * survives a restart and is retried like any delivery. Rules are not
 * consulted (a notice must not be dropped by a camera's rule) and no
 * rate limit applies; the rule name the deliveries carry is "camgate". */
#ifndef CAMGATE_NOTICE_H
#define CAMGATE_NOTICE_H

#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"
#include "gateway/router.h"
#include "gateway/spool.h"

#define NOTICE_RULE "camgate"

/* Returns a new notice event (the caller owns it). */
struct cam_event *notice_event(const char *kind, const char *title,
                               const char *text);

/* Fills out (room for max) with a route to each backend of cfg except
 * the one named about; returns the count. */
size_t notice_routes(const struct config *cfg, const char *about,
                     struct route *out, size_t max);

/* Stores a notice about backend `about` for every other backend.
 * Returns the number of backends it goes to (0: none; nothing stored,
 * stored is not called); stored(arg, ...) follows as for
 * spool_submit(). */
size_t notice_send(struct spool *sp, const struct config *cfg,
                   const char *about, const char *kind, const char *title,
                   const char *text, spool_stored_fn stored, void *arg);

#endif
