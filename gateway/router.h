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
 * A rule matches when every non-empty match list (camera, kind, source,
 * state as "pulse"/"start"/"stop") has a glob that fnmatch(3)es the
 * event's field; an empty list matches anything, and a missing field is
 * matched as "". */
#ifndef CAMGATE_ROUTER_H
#define CAMGATE_ROUTER_H

#include <stddef.h>

#include "config/config.h"
#include "gateway/event.h"

struct route {
  const char *backend;      /* points into the config */
  const char *rule;         /* points into the config */
};

/* Fills out (room for max) and returns the count of routes for ev. */
size_t router_route(const struct config *cfg, const struct cam_event *ev,
                    struct route *out, size_t max);

/* Returns 1 when rule r matches ev. */
int router_rule_matches(const struct rule_conf *r, const struct cam_event *ev);

#endif
