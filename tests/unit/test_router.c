/* test_router.c - rule matching and route collection.
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
    list_free(&b);
  }
  free(cfg->rules);
  cfg->rules = NULL;
  cfg->nrules = 0;
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
  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev), 0);
  assert_int_equal(router_rule_matches(&f->cfg.rules[1], ev), 1);
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

  assert_int_equal(router_rule_matches(&f->cfg.rules[0], ev), 0);
  assert_int_equal(router_rule_matches(&f->cfg.rules[1], ev), 1);
  assert_int_equal(router_rule_matches(&f->cfg.rules[2], ev), 1);
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
  };
#undef T

  return cmocka_run_group_tests(tests, NULL, NULL);
}
