/* router.c - see router.h. */
#include "gateway/router.h"

#include <fnmatch.h>
#include <string.h>

/* A moment as the rules see it: weekday (0 Monday) and minute of day. */
struct local_time {
  int wday;
  int minute;
};

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

static int
router_labels_match(const struct rule_conf *r, const struct cam_event *ev)
{
  for (size_t i = 0; i < r->nlabels; i++) {
    const struct label_match *lm = &r->labels[i];

    if (!router_list_matches(&lm->values, cam_event_label(ev, lm->key)))
      return 0;
  }
  return 1;
}

int64_t
router_event_time(const struct cam_event *ev)
{
  if (ev->recv_time > 0)
    return ev->recv_time;
  if (ev->device_time > 0)
    return ev->device_time;
  return now_ms();
}

static void
router_local(const struct cam_event *ev, GTimeZone *tz,
             struct local_time *lt)
{
  int64_t ms = router_event_time(ev);
  int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
  GDateTime *utc = g_date_time_new_from_unix_utc(secs);
  GDateTime *local = NULL;

  lt->wday = 0;
  lt->minute = 0;
  if (utc)
    local = tz ? g_date_time_to_timezone(utc, tz) : g_date_time_ref(utc);
  if (local) {
    lt->wday = g_date_time_get_day_of_week(local) - 1;
    lt->minute = g_date_time_get_hour(local) * 60 +
                 g_date_time_get_minute(local);
    g_date_time_unref(local);
  }
  if (utc)
    g_date_time_unref(utc);
}

static unsigned
router_days(const struct match_list *days)
{
  unsigned mask = 0;

  for (size_t i = 0; i < days->n; i++)
    config_parse_days(days->globs[i], &mask);
  return days->n ? mask : 0x7fu;
}

/* Returns 1 when lt is in one of r's windows on one of r's days. */
static int
router_when_matches(const struct rule_conf *r, const struct local_time *lt)
{
  unsigned days = router_days(&r->days);
  int yesterday = (lt->wday + 6) % 7;

  if (r->time.n == 0)
    return (days >> lt->wday) & 1u;
  for (size_t i = 0; i < r->time.n; i++) {
    int from, to;

    if (config_parse_window(r->time.globs[i], &from, &to) < 0)
      continue;
    if (from < to) {
      if (lt->minute >= from && lt->minute < to &&
          ((days >> lt->wday) & 1u))
        return 1;
    } else if (lt->minute >= from) {
      if ((days >> lt->wday) & 1u)
        return 1;
    } else if (lt->minute < to && ((days >> yesterday) & 1u)) {
      return 1;
    }
  }
  return 0;
}

const char *
router_rule_mismatch(const struct rule_conf *r, const struct cam_event *ev,
                     GTimeZone *tz)
{
  struct local_time lt;

  if (!router_list_matches(&r->camera, ev->camera))
    return "camera";
  if (!router_list_matches(&r->kind, ev->kind))
    return "kind";
  if (!router_list_matches(&r->source, ev->source))
    return "source";
  if (!router_list_matches(&r->state, event_state_name(ev->state)))
    return "state";
  if (!router_labels_match(r, ev))
    return "labels";
  if (r->snapshot != MATCH_SNAPSHOT_ANY &&
      (cam_event_snapshot(ev) != NULL) != (r->snapshot == MATCH_SNAPSHOT_YES))
    return "snapshot";
  if (r->days.n == 0 && r->time.n == 0)
    return NULL;
  router_local(ev, tz, &lt);
  if (!router_when_matches(r, &lt))
    return r->time.n ? "time" : "days";
  return NULL;
}

int
router_rule_matches(const struct rule_conf *r, const struct cam_event *ev,
                    GTimeZone *tz)
{
  return router_rule_mismatch(r, ev, tz) == NULL;
}

static int
router_has_backend(const struct route *out, size_t n, const char *backend)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(out[i].backend, backend) == 0)
      return 1;
  return 0;
}

static void
router_limits(const struct action *a, struct rl_limits *lim)
{
  memset(lim, 0, sizeof(*lim));
  lim->cooldown_ms = (int64_t)a->cooldown * 1000;
  lim->rate_n = a->rate_n;
  lim->rate_per_ms = (int64_t)a->rate_per * 1000;
  lim->burst = a->burst;
  lim->daily_cap = a->daily_cap;
  lim->summary = a->summary;
}

/* Fills rt for backend b of rule r. */
static void
router_fill(const struct config *cfg, const struct rule_conf *r,
            const char *b, const struct cam_event *ev, struct route *rt)
{
  struct action cam;

  memset(rt, 0, sizeof(*rt));
  rt->backend = b;
  rt->rule = r->name;
  rt->tz = cfg->tz;
  config_action(cfg, r->name, b, ev->camera, &rt->action);
  rt->limited = rt->action.limited;
  if (!rt->limited)
    return;
  router_limits(&rt->action, &rt->limits);
  config_camera_limit(cfg, ev->camera, &cam);
  router_limits(&cam, &rt->camera);
  rt->camera.summary = 0;
}

/* Appends r's backends not yet in out; returns the new count. */
static size_t
router_collect(const struct config *cfg, const struct rule_conf *r,
               const struct cam_event *ev, struct route *out, size_t n,
               size_t max)
{
  for (size_t i = 0; i < r->nbackends && n < max; i++) {
    const char *b = r->backends[i];

    if (b == NULL || router_has_backend(out, n, b))
      continue;
    router_fill(cfg, r, b, ev, &out[n]);
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

    if (!router_rule_matches(r, ev, cfg->tz))
      continue;
    if (r->drop)
      break;
    n = router_collect(cfg, r, ev, out, n, max);
    if (!r->cont)
      break;
  }
  return n;
}
