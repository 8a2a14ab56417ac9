/* kind.h - the event kind and state from an alert's words.
 *
 * The user's patterns (smtp.kinds in the config) are tried first, then the
 * built-in ones for the common vendors (Hikvision, Dahua/Amcrest, Reolink,
 * Foscam, Axis, TP-Link, Uniview, Synology, Blue Iris, ZoneMinder). No match
 * gives kind "alert". The state is "start" or "stop" when the words say so
 * ("Motion Detection Start", "alarm end"), otherwise "pulse". */
#ifndef CAMGATE_KIND_H
#define CAMGATE_KIND_H

#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"

/* Sets *kind to a static string or one owned by the config. */
void kind_classify(const struct kind_pattern *user, size_t nuser,
                   const char *subject, const char *body,
                   const char **kind, enum event_state *state);

/* Returns 1 when kind is one camgate knows by name (motion, person, ...). */
int kind_is_builtin(const char *kind);

#endif
