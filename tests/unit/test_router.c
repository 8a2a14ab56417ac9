/* test_router.c - rule matching and route collection: globs, labels,
 * snapshots, days and time windows (across midnight, and on the days
 * Europe/Berlin changes its clocks), first match, continue and drop.
 *
 * Rules are built by hand so these tests do not depend on the YAML
 * loader. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/router.h"

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const *)NULL)

static void
list_set(struct match_list *l, const char *const *globs)
{
  size_t n = 0;

  while (globs && globs[n])
    n++;
  l->n = n;
  l->globs = n ? xcalloc(n, sizeof(*l->globs)) : NULL;
  for (size_t i = 0; i < n; i++)
    l->globs[i] = xstrdup(globs[i]);
}

static void
list_free(struct match_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    free(l->globs[i]);
  free(l->globs);
}

/* Appends a rule; the match lists are set on the returned pointer, which
 * holds until the next rule_add(). */
static struct rule_conf *
rule_add(struct config *cfg, const char *name, const char *const *backends,
         int cont, int drop)
{
  struct rule_conf *r;
  struct match_list b;

  cfg->rules = xrealloc(cfg->rules, (cfg->nrules + 1) * sizeof(*r));
  r = &cfg->rules[cfg->nrules++];
  memset(r, 0, sizeof(*r));
  r->name = xstrdup(name);
  list_set(&b, backends);
  r->backends = b.globs;
  r->nbackends = b.n;
  r->cont = cont;
  r->drop = drop;
  return r;
}

static void
rules_free(struct config *cfg)
{
  for (size_t i = 0; i < cfg->nrules; i++) {
    struct rule_conf *r = &cfg->rules[i];
    struct match_list b = {r->backends, r->nbackends};

    free(r->name);
    list_free(&r->camera);
    list_free(&r->kind);
    list_free(&r->source);
    list_free(&r->state);
    list_free(&r->days);
    list_free(&r->time);
    for (size_t j = 0; j < r->nlabels; j++) {
      free(r->labels[j].key);
      list_free(&r->labels[j].values);
    }
    free(r->labels);
    list_free(&b);
  }
  free(cfg->rules);
  cfg->rules = NULL;
  cfg->nrules = 0;
}

static void
label_add(struct rule_conf *r, const char *key, const char *const *globs)
{
  r->labels = xrealloc(r->labels, (r->nlabels + 1) * sizeof(*r->labels));
  r->labels[r->nlabels].key = xstrdup(key);
  list_set(&r->labels[r->nlabels].values, globs);
  r->nlabels++;
}

/* ms since the epoch of an ISO 8601 time with its offset. */
static int64_t
iso_ms(const char *iso)
{
  GDateTime *dt = g_date_time_new_from_iso8601(iso, NULL);
  int64_t ms;

  assert_non_null(dt);
  ms = g_date_time_to_unix(dt) * 1000;
  g_date_time_unref(dt);
  return ms;
}

static struct cam_event *
ev_make(const char *camera, const char *source, const char *kind,
        enum event_state st)
{
  struct cam_event *ev = cam_event_new();

  cam_event_set(&ev->camera, camera);
  cam_event_set(&ev->source, source);
  cam_event_set(&ev->kind, kind);
  ev->state = st;
  return ev;
}

struct fixture {
  struct config cfg;
  struct route out[8];
};

static int
fixture_setup(void **state)
{
  *state = xcalloc(1, sizeof(struct fixture));
  return 0;
}

static int
fixture_teardown(void **state)
{
  struct fixture *f = *state;

  rules_free(&f->cfg);
  free(f);
  return 0;
}

static size_t
route(struct fixture *f, const char *camera, const char *source,
      const char *kind, enum event_state st, size_t max)
{
  struct cam_event *ev = ev_make(camera, source, kind, st);
  size_t n;

  memset(f->out, 0, sizeof(f->out));
  n = router_route(&f->cfg, ev, f->out, max);
  cam_event_free(ev);
  return n;
}

#define ASSERT_ROUTE(f, i, b, r) do { \
    assert_string_equal((f)->out[i].backend, (b)); \
    assert_string_equal((f)->out[i].rule, (r)); \
  } while (0)

static void
test_no_rules_no_routes(void **state)
{
  struct fixture *f = *state;

  assert_int_equal(route(f, "cam-1", "smtp", "motion", EVENT_START, 8), 0);
}

static void
test_first_match_wins(void **state)
{
  struct fixture *f = *state;

  list_set(&rule_add(&f->cfg, "cams", LIST("mqtt"), 0, 0)->camera,
           LIST("cam-*"));
  rule_add(&f->cfg, "rest", LIST("ntfy"), 0, 0);

  assert_int_equal(route(f, "cam-1", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "cams");
  assert_int_equal(route(f, "door", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "ntfy", "rest");
}

static void
test_continue_collects(void **state)
{
  struct fixture *f = *state;

  list_set(&rule_add(&f->cfg, "r1", LIST("a"), 1, 0)->kind, LIST("motion"));
  list_set(&rule_add(&f->cfg, "r2", LIST("b"), 1, 0)->camera,
           LIST("cam-1"));
  list_set(&rule_add(&f->cfg, "r3", LIST("x"), 1, 0)->camera,
           LIST("cam-2"));
  rule_add(&f->cfg, "r4", LIST("c"), 0, 0);
  rule_add(&f->cfg, "r5", LIST("d"), 0, 0);

  assert_int_equal(route(f, "cam-1", "smtp", "motion", EVENT_PULSE, 8), 3);
  ASSERT_ROUTE(f, 0, "a", "r1");
  ASSERT_ROUTE(f, 1, "b", "r2");
  ASSERT_ROUTE(f, 2, "c", "r4");

  assert_int_equal(route(f, "cam-2", "smtp", "person", EVENT_PULSE, 8), 2);
  ASSERT_ROUTE(f, 0, "x", "r3");
  ASSERT_ROUTE(f, 1, "c", "r4");
}

static void
test_drop(void **state)
{
  struct fixture *f = *state;

  rule_add(&f->cfg, "log-all", LIST("archive"), 1, 0);
  list_set(&rule_add(&f->cfg, "no-tamper", LIST("ntfy"), 0, 1)->kind,
           LIST("tamper"));
  rule_add(&f->cfg, "default", LIST("mqtt", "ntfy"), 0, 0);

  /* The drop keeps what an earlier continue rule collected, adds none of
   * its own backends and stops the walk. */
  assert_int_equal(route(f, "cam-1", "smtp", "tamper", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "archive", "log-all");

  assert_int_equal(route(f, "cam-1", "smtp", "motion", EVENT_PULSE, 8), 3);
  ASSERT_ROUTE(f, 0, "archive", "log-all");
  ASSERT_ROUTE(f, 1, "mqtt", "default");
  ASSERT_ROUTE(f, 2, "ntfy", "default");
}

static void
test_drop_first(void **state)
{
  struct fixture *f = *state;

  list_set(&rule_add(&f->cfg, "quiet", NONE, 1, 1)->camera, LIST("test-*"));
  rule_add(&f->cfg, "default", LIST("mqtt"), 0, 0);

  assert_int_equal(route(f, "test-cam", "http", "alert", EVENT_PULSE, 8), 0);
  assert_int_equal(route(f, "cam", "http", "alert", EVENT_PULSE, 8), 1);
}

static void
test_globs(void **state)
{
  struct fixture *f = *state;

  list_set(&rule_add(&f->cfg, "ab", LIST("a"), 0, 0)->camera,
           LIST("[ab]*"));
  list_set(&rule_add(&f->cfg, "one-char", LIST("b"), 0, 0)->camera,
           LIST("cam-?"));
  list_set(&rule_add(&f->cfg, "prefix", LIST("c"), 0, 0)->camera,
           LIST("cam-*"));

  assert_int_equal(route(f, "alpha", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "a", "ab");
  assert_int_equal(route(f, "bravo", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "a", "ab");
  assert_int_equal(route(f, "cam-7", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "b", "one-char");
  assert_int_equal(route(f, "cam-12", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "c", "prefix");
  assert_int_equal(route(f, "cam-", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "c", "prefix");
  /* Globs match the whole id and are case-sensitive. */
  assert_int_equal(route(f, "charlie", "smtp", "motion", EVENT_PULSE, 8), 0);
  assert_int_equal(route(f, "Alpha", "smtp", "motion", EVENT_PULSE, 8), 0);
  assert_int_equal(route(f, "my-cam-1", "smtp", "motion", EVENT_PULSE, 8),
                   0);
}

static void
test_lists_and_fields(void **state)
{
  struct fixture *f = *state;
  struct rule_conf *r;

  r = rule_add(&f->cfg, "front-people", LIST("ntfy"), 0, 0);
  list_set(&r->camera, LIST("front", "back"));
  list_set(&r->kind, LIST("person", "vehicle"));
  list_set(&r->source, LIST("smtp", "onvif"));
  rule_add(&f->cfg, "else", LIST("mqtt"), 0, 0);

  assert_int_equal(route(f, "front", "smtp", "person", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "ntfy", "front-people");
  assert_int_equal(route(f, "back", "onvif", "vehicle", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "ntfy", "front-people");
  /* Every list must match, not just one. */
  assert_int_equal(route(f, "side", "smtp", "person", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "else");
  assert_int_equal(route(f, "front", "smtp", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "else");
  assert_int_equal(route(f, "front", "ftp", "person", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "else");
}

static void
test_state(void **state)
{
  struct fixture *f = *state;
  struct cam_event *ev;

  list_set(&rule_add(&f->cfg, "edges", LIST("mqtt"), 0, 0)->state,
           LIST("start", "pulse"));
  list_set(&rule_add(&f->cfg, "stops", LIST("log"), 0, 0)->state,
           LIST("st?p"));

  assert_int_equal(route(f, "c", "onvif", "motion", EVENT_START, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "edges");
  assert_int_equal(route(f, "c", "onvif", "motion", EVENT_PULSE, 8), 1);
  ASSERT_ROUTE(f, 0, "mqtt", "edges");
  assert_int_equal(route(f, "c", "onvif", "motion", EVENT_STOP, 8), 1);
  ASSERT_ROUTE(f, 0, "log", "stops");

  ev = ev_make("c", "onvif", "motion", EVENT_STOP);
  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev, NULL), 0);
  assert_int_equal(router_rule_matches(&f->cfg.rules[1], ev, NULL), 1);
  cam_event_free(ev);
}

static void
test_missing_field(void **state)
{
  struct fixture *f = *state;
  struct cam_event *ev = ev_make("cam-1", "smtp", NULL, EVENT_PULSE);

  list_set(&rule_add(&f->cfg, "motion", LIST("a"), 0, 0)->kind,
           LIST("motion"));
  list_set(&rule_add(&f->cfg, "star", LIST("b"), 0, 0)->kind, LIST("*"));
  rule_add(&f->cfg, "any", LIST("c"), 0, 0);

  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev, NULL), 0);
  assert_int_equal(router_rule_matches(&f->cfg.rules[1], ev, NULL), 1);
  assert_int_equal(router_rule_matches(&f->cfg.rules[2], ev, NULL), 1);
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "b", "star");
  cam_event_free(ev);
}

static void
test_backend_dedup(void **state)
{
  struct fixture *f = *state;

  rule_add(&f->cfg, "r1", LIST("a", "b", "a"), 1, 0);
  rule_add(&f->cfg, "r2", LIST("b", "c", "a"), 0, 0);

  assert_int_equal(route(f, "cam", "smtp", "motion", EVENT_PULSE, 8), 3);
  ASSERT_ROUTE(f, 0, "a", "r1");
  ASSERT_ROUTE(f, 1, "b", "r1");
  ASSERT_ROUTE(f, 2, "c", "r2");
}

static void
test_max_respected(void **state)
{
  struct fixture *f = *state;

  rule_add(&f->cfg, "r1", LIST("a", "b", "c"), 1, 0);
  rule_add(&f->cfg, "r2", LIST("d"), 0, 0);

  assert_int_equal(route(f, "cam", "smtp", "motion", EVENT_PULSE, 2), 2);
  ASSERT_ROUTE(f, 0, "a", "r1");
  ASSERT_ROUTE(f, 1, "b", "r1");
  /* Nothing is written past max. */
  assert_null(f->out[2].backend);
  assert_int_equal(route(f, "cam", "smtp", "motion", EVENT_PULSE, 3), 3);
  assert_null(f->out[3].backend);
  assert_int_equal(route(f, "cam", "smtp", "motion", EVENT_PULSE, 4), 4);
  ASSERT_ROUTE(f, 3, "d", "r2");
  assert_int_equal(route(f, "cam", "smtp", "motion", EVENT_PULSE, 0), 0);
  assert_null(f->out[0].backend);
}

static void
test_labels(void **state)
{
  struct fixture *f = *state;
  struct cam_event *ev = ev_make("nvr-D4", "smtp", "motion", EVENT_PULSE);
  struct rule_conf *r;

  r = rule_add(&f->cfg, "drive", LIST("phone"), 0, 0);
  label_add(r, "channel", LIST("D*"));
  label_add(r, "zone", LIST("gate", "drive?way"));
  rule_add(&f->cfg, "rest", LIST("ha"), 0, 0);

  cam_event_add_label(ev, "channel", "D4");
  assert_string_equal(router_rule_mismatch(&f->cfg.rules[0], ev, NULL),
                      "labels");
  cam_event_add_label(ev, "zone", "drive-way");
  assert_null(router_rule_mismatch(&f->cfg.rules[0], ev, NULL));
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "phone", "drive");
  cam_event_free(ev);

  /* Every label must match; the first value of a key counts. */
  ev = ev_make("nvr-A1", "smtp", "motion", EVENT_PULSE);
  cam_event_add_label(ev, "channel", "A1");
  cam_event_add_label(ev, "zone", "gate");
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "ha", "rest");
  cam_event_free(ev);
}

static void
test_label_missing_is_empty(void **state)
{
  struct fixture *f = *state;
  struct cam_event *ev = ev_make("cam", "smtp", "motion", EVENT_PULSE);
  struct rule_conf *r;

  r = rule_add(&f->cfg, "no-zone", LIST("a"), 0, 0);
  label_add(r, "zone", LIST(""));
  r = rule_add(&f->cfg, "any-zone", LIST("b"), 0, 0);
  label_add(r, "zone", LIST("*"));

  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev, NULL), 1);
  assert_int_equal(router_rule_matches(&f->cfg.rules[1], ev, NULL), 1);
  cam_event_add_label(ev, "zone", "x");
  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev, NULL), 0);
  cam_event_free(ev);
}

static void
test_snapshot_match(void **state)
{
  static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xd9};
  struct fixture *f = *state;
  struct cam_event *ev = ev_make("cam", "smtp", "motion", EVENT_PULSE);

  rule_add(&f->cfg, "with", LIST("phone"), 0, 0)->snapshot =
    MATCH_SNAPSHOT_YES;
  rule_add(&f->cfg, "without", LIST("mail"), 0, 0)->snapshot =
    MATCH_SNAPSHOT_NO;

  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "mail", "without");
  /* A text attachment is not a snapshot. */
  cam_event_add_attachment(ev, "a.txt", "text/plain", jpeg, sizeof(jpeg));
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "mail", "without");
  cam_event_add_attachment(ev, "a.jpg", "image/jpeg", jpeg, sizeof(jpeg));
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "phone", "with");
  cam_event_free(ev);
}

/* Whether rule 0 matches an event received at iso in tz. */
static int
matches_at(struct fixture *f, const char *iso, GTimeZone *tz)
{
  struct cam_event *ev = ev_make("cam", "smtp", "motion", EVENT_PULSE);
  int m;

  ev->recv_time = iso_ms(iso);
  m = router_rule_matches(&f->cfg.rules[0], ev, tz);
  cam_event_free(ev);
  return m;
}

static void
test_window_across_midnight(void **state)
{
  struct fixture *f = *state;

  list_set(&rule_add(&f->cfg, "night", LIST("a"), 0, 0)->time,
           LIST("23:00-06:30"));

  assert_false(matches_at(f, "2026-12-03T22:59:59Z", NULL));
  assert_true(matches_at(f, "2026-12-03T23:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-04T00:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-04T06:29:59Z", NULL));
  assert_false(matches_at(f, "2026-12-04T06:30:00Z", NULL));
  assert_false(matches_at(f, "2026-12-04T12:00:00Z", NULL));
}

static void
test_windows_and_days(void **state)
{
  struct fixture *f = *state;
  struct rule_conf *r = rule_add(&f->cfg, "weekend", LIST("a"), 0, 0);
  struct cam_event *ev;

  /* Friday night and Saturday night, and Sunday 10-12. */
  list_set(&r->days, LIST("fri-sat"));
  list_set(&r->time, LIST("23:00-06:30"));
  /* 2026-12-04 is a Friday. */
  assert_false(matches_at(f, "2026-12-04T02:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-04T23:30:00Z", NULL));
  /* Saturday 02:00 belongs to Friday's window. */
  assert_true(matches_at(f, "2026-12-05T02:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-05T23:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-06T06:00:00Z", NULL));
  assert_false(matches_at(f, "2026-12-06T23:00:00Z", NULL));
  assert_false(matches_at(f, "2026-12-07T02:00:00Z", NULL));

  list_free(&r->time);
  list_set(&r->time, LIST("10:00-12:00", "00:00-01:00"));
  list_free(&r->days);
  list_set(&r->days, LIST("sun"));
  assert_true(matches_at(f, "2026-12-06T11:00:00Z", NULL));
  assert_true(matches_at(f, "2026-12-06T00:30:00Z", NULL));
  assert_false(matches_at(f, "2026-12-05T11:00:00Z", NULL));

  /* Days alone: the whole day. */
  list_free(&r->time);
  memset(&r->time, 0, sizeof(r->time));
  assert_true(matches_at(f, "2026-12-06T23:59:59Z", NULL));
  assert_false(matches_at(f, "2026-12-07T00:00:00Z", NULL));
  ev = ev_make("cam", "smtp", "motion", EVENT_PULSE);
  ev->recv_time = iso_ms("2026-12-07T00:00:00Z");
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "days");
  cam_event_free(ev);
}

static void
test_zone(void **state)
{
  struct fixture *f = *state;
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");

  list_set(&rule_add(&f->cfg, "night", LIST("a"), 0, 0)->time,
           LIST("23:00-06:30"));
  /* 22:30 UTC is 23:30 in Berlin in winter. */
  assert_false(matches_at(f, "2026-12-03T22:30:00Z", NULL));
  assert_true(matches_at(f, "2026-12-03T22:30:00Z", berlin));
  assert_false(matches_at(f, "2026-12-04T05:45:00Z", berlin));
  assert_true(matches_at(f, "2026-12-04T05:15:00Z", berlin));
  g_time_zone_unref(berlin);
}

static void
test_dst_spring(void **state)
{
  struct fixture *f = *state;
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");
  struct rule_conf *r = rule_add(&f->cfg, "w", LIST("a"), 0, 0);

  /* 2026-03-29: at 02:00 CET the clocks go to 03:00 CEST. */
  list_set(&r->time, LIST("02:00-03:00"));
  list_set(&r->days, LIST("sun"));
  assert_false(matches_at(f, "2026-03-29T00:59:59Z", berlin)); /* 01:59 */
  assert_false(matches_at(f, "2026-03-29T01:00:00Z", berlin)); /* 03:00 */
  assert_false(matches_at(f, "2026-03-29T01:30:00Z", berlin)); /* 03:30 */
  list_free(&r->time);
  list_set(&r->time, LIST("01:30-03:30"));
  assert_true(matches_at(f, "2026-03-29T00:45:00Z", berlin));  /* 01:45 */
  assert_true(matches_at(f, "2026-03-29T01:15:00Z", berlin));  /* 03:15 */
  assert_false(matches_at(f, "2026-03-29T01:30:00Z", berlin)); /* 03:30 */
  /* The week after, 01:30 UTC is 03:30 again: the wall clock counts. */
  assert_false(matches_at(f, "2026-04-05T01:30:00Z", berlin));
  assert_true(matches_at(f, "2026-04-05T01:15:00Z", berlin));
  /* Quiet hours across that night hold on the wall clock, too. */
  list_free(&r->time);
  list_set(&r->time, LIST("23:00-06:30"));
  list_free(&r->days);
  list_set(&r->days, LIST("sat"));
  assert_true(matches_at(f, "2026-03-28T22:00:00Z", berlin));  /* 23:00 */
  assert_true(matches_at(f, "2026-03-29T04:29:00Z", berlin));  /* 06:29 */
  assert_false(matches_at(f, "2026-03-29T04:30:00Z", berlin)); /* 06:30 */
  assert_false(matches_at(f, "2026-03-29T05:15:00Z", berlin)); /* 07:15 */
  g_time_zone_unref(berlin);
}

static void
test_dst_autumn(void **state)
{
  struct fixture *f = *state;
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");
  struct rule_conf *r = rule_add(&f->cfg, "w", LIST("a"), 0, 0);

  /* 2026-10-25: at 03:00 CEST the clocks go back to 02:00 CET, so 02:30
   * happens twice, and both are in the window. */
  list_set(&r->time, LIST("02:00-03:00"));
  assert_false(matches_at(f, "2026-10-24T23:59:00Z", berlin)); /* 01:59 */
  assert_true(matches_at(f, "2026-10-25T00:30:00Z", berlin));  /* 02:30 */
  assert_true(matches_at(f, "2026-10-25T01:30:00Z", berlin));  /* 02:30 */
  assert_false(matches_at(f, "2026-10-25T02:00:00Z", berlin)); /* 03:00 */
  list_free(&r->time);
  list_set(&r->time, LIST("23:00-06:30"));
  list_set(&r->days, LIST("sat"));
  assert_true(matches_at(f, "2026-10-24T21:00:00Z", berlin));  /* 23:00 */
  assert_true(matches_at(f, "2026-10-25T05:29:00Z", berlin));  /* 06:29 */
  assert_false(matches_at(f, "2026-10-25T05:30:00Z", berlin)); /* 06:30 */
  g_time_zone_unref(berlin);
}

/* The example: person at the door to the phone any time, garden
 * motion to Home Assistant only, nothing else to the phone at night. */
static void
test_quiet_hours_rules(void **state)
{
  struct fixture *f = *state;
  struct rule_conf *r;
  struct cam_event *ev;

  rule_add(&f->cfg, "ha", LIST("ha"), 1, 0);
  r = rule_add(&f->cfg, "door", LIST("phone"), 0, 0);
  list_set(&r->camera, LIST("door"));
  list_set(&r->kind, LIST("person"));
  list_set(&rule_add(&f->cfg, "garden", NONE, 0, 1)->camera,
           LIST("garden"));
  list_set(&rule_add(&f->cfg, "quiet", NONE, 0, 1)->time,
           LIST("23:00-06:30"));
  rule_add(&f->cfg, "phone", LIST("phone"), 0, 0);

  ev = ev_make("door", "smtp", "person", EVENT_PULSE);
  ev->recv_time = iso_ms("2026-12-03T23:30:00Z");
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 2);
  ASSERT_ROUTE(f, 0, "ha", "ha");
  ASSERT_ROUTE(f, 1, "phone", "door");
  cam_event_set(&ev->kind, "motion");
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "ha", "ha");
  ev->recv_time = iso_ms("2026-12-03T12:00:00Z");
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 2);
  ASSERT_ROUTE(f, 1, "phone", "phone");
  cam_event_set(&ev->camera, "garden");
  assert_int_equal(router_route(&f->cfg, ev, f->out, 8), 1);
  ASSERT_ROUTE(f, 0, "ha", "ha");
  cam_event_free(ev);
}

static void
test_mismatch_reasons(void **state)
{
  struct fixture *f = *state;
  struct cam_event *ev = ev_make("cam", "smtp", "motion", EVENT_STOP);
  struct rule_conf *r = rule_add(&f->cfg, "r", LIST("a"), 0, 0);

  ev->recv_time = iso_ms("2026-12-03T12:00:00Z");
  list_set(&r->time, LIST("23:00-06:30"));
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "time");
  r->snapshot = MATCH_SNAPSHOT_YES;
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "snapshot");
  list_set(&r->state, LIST("start"));
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "state");
  list_set(&r->source, LIST("ftp"));
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "source");
  list_set(&r->kind, LIST("person"));
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "kind");
  list_set(&r->camera, LIST("door"));
  assert_string_equal(router_rule_mismatch(r, ev, NULL), "camera");
  cam_event_free(ev);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, \
                                              fixture_teardown)
  const struct CMUnitTest tests[] = {
    T(test_no_rules_no_routes),
    T(test_first_match_wins),
    T(test_continue_collects),
    T(test_drop),
    T(test_drop_first),
    T(test_globs),
    T(test_lists_and_fields),
    T(test_state),
    T(test_missing_field),
    T(test_backend_dedup),
    T(test_max_respected),
    T(test_labels),
    T(test_label_missing_is_empty),
    T(test_snapshot_match),
    T(test_window_across_midnight),
    T(test_windows_and_days),
    T(test_zone),
    T(test_dst_spring),
    T(test_dst_autumn),
    T(test_quiet_hours_rules),
    T(test_mismatch_reasons),
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
