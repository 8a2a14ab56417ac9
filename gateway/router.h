/* router.h - decides, from the rules, where an event goes.
 *
 * Rules are tried in order; the first that matches decides, unless it says
 * `continue: true`, in which case later rules are tried too. A matching
 * rule with `drop: true` ends the walk and adds no delivery of its own;
 * routes already collected from earlier `continue` rules stand, because
 * those rules asked for the event before the drop was reached (a rule that
 * means "drop this everywhere" belongs before them). Each backend is named
 * at most once in the result, with the first rule that sent it.
 *
 * A rule matches when every match key given holds:
 *   camera, kind, source, state   a glob of the list fnmatch(3)es the
 *                                 event's field ("pulse"/"start"/"stop"
 *                                 for state); a missing field is ""
 *   labels                        for each label named, a glob matches
 *                                 its value ("" when the event has none)
 *   days, time                    the receive time, in the config's zone
 *                                 (NULL: UTC), falls on one of the days
 *                                 and in one of the windows; the part of
 *                                 a window after midnight belongs to the
 *                                 day it started on ("fri" with
 *                                 "23:00-06:30" holds on Saturday 02:00)
 *   snapshot                      the event has (true) or has not (false)
 *                                 a JPEG or PNG
 * An empty key matches anything. Times are wall-clock times of the zone,
 * so on a day of a DST change a window meets the hours that day has. */
#ifndef CAMGATE_ROUTER_H
#define CAMGATE_ROUTER_H

#include <glib.h>
#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"
#include "gateway/ratelimit.h"

struct route {
  const char *backend;      /* points into the config */
  const char *rule;         /* points into the config */
  struct action action;     /* the merged action (config_action) */
  int limited;              /* a notification backend: limits apply */
  struct rl_limits limits;  /* per camera and backend */
  struct rl_limits camera;  /* camera-wide, over all such backends */
  GTimeZone *tz;            /* the config's zone (borrowed); NULL: UTC */
};

/* Fills out (room for max) and returns the count of routes for ev. */
size_t router_route(const struct config *cfg, const struct cam_event *ev,
                    struct route *out, size_t max);

/* Returns 1 when rule r matches ev, with days and times in tz. */
int router_rule_matches(const struct rule_conf *r, const struct cam_event *ev,
                        GTimeZone *tz);
/* Returns the first match key of r that ev fails ("camera", "labels",
 * "time", ...), or NULL when r matches. */
const char *router_rule_mismatch(const struct rule_conf *r,
                                 const struct cam_event *ev, GTimeZone *tz);

/* The time rules match ev at: its receive time, else its device time,
 * else now (ms since the epoch). */
int64_t router_event_time(const struct cam_event *ev);

#endif
