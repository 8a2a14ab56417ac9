/* router.c - see router.h. */
#include "gateway/router.h"

#include <fnmatch.h>
#include <string.h>

static int
router_list_matches(const struct match_list *l, const char *value)
{
  if (l->n == 0)
    return 1;
  /* A missing field still has to meet the list, as "" rather than as a
   * wildcard, so "cam-*" never catches an event without a camera. */
  if (value == NULL)
    value = "";
  for (size_t i = 0; i < l->n; i++)
    if (l->globs[i] && fnmatch(l->globs[i], value, 0) == 0)
      return 1;
  return 0;
}

int
router_rule_matches(const struct rule_conf *r, const struct cam_event *ev)
{
  return router_list_matches(&r->camera, ev->camera)
    && router_list_matches(&r->kind, ev->kind)
    && router_list_matches(&r->source, ev->source)
    && router_list_matches(&r->state, event_state_name(ev->state));
}

static int
router_has_backend(const struct route *out, size_t n, const char *backend)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(out[i].backend, backend) == 0)
      return 1;
  return 0;
}

/* Appends r's backends not yet in out; returns the new count. */
static size_t
router_collect(const struct rule_conf *r, struct route *out, size_t n,
               size_t max)
{
  for (size_t i = 0; i < r->nbackends && n < max; i++) {
    const char *b = r->backends[i];

    if (b == NULL || router_has_backend(out, n, b))
      continue;
    out[n].backend = b;
    out[n].rule = r->name;
    n++;
  }
  return n;
}

size_t
router_route(const struct config *cfg, const struct cam_event *ev,
             struct route *out, size_t max)
{
  size_t n = 0;

  if (cfg == NULL || ev == NULL || out == NULL)
    return 0;
  for (size_t i = 0; i < cfg->nrules && n < max; i++) {
    const struct rule_conf *r = &cfg->rules[i];

    if (!router_rule_matches(r, ev))
      continue;
    if (r->drop)
      break;
    n = router_collect(r, out, n, max);
    if (!r->cont)
      break;
  }
  return n;
}
