/* router.h - decides, from the rules, where an event goes.
 *
 * Rules are tried in order; the first that matches decides, unless it says
 * `continue: true`, in which case later rules are tried too. A matching
 * rule with `drop: true` ends the walk with no delivery. Each backend is
 * named at most once in the result, with the first rule that sent it. */
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
size_t router_route(const struct config *cfg, const struct event *ev,
                    struct route *out, size_t max);

/* Returns 1 when rule r matches ev. */
int router_rule_matches(const struct rule_conf *r, const struct event *ev);

#endif
