/* test_rules_config.c - the rule language in camgate.yaml: match keys
 * (labels, days, time, snapshot), per-backend actions, defaults per
 * backend and per camera and how they merge (config_action), the
 * camera-wide limit, the time zone, and every new key's errors with
 * file:line:col. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/template.h"

#define ERRSZ 8192

static char tmpdir[64];
static char path[128];
static char err[ERRSZ];

static struct config *
load_text(const char *yaml)
{
  FILE *f = fopen(path, "w");

  assert_non_null(f);
  fputs(yaml, f);
  fclose(f);
  return config_load(path, err, sizeof(err));
}

static struct config *
load_ok(const char *yaml)
{
  struct config *cfg = load_text(yaml);

  if (cfg == NULL)
    fail_msg("config failed:\n%s", err);
  return cfg;
}

/* Asserts that yaml fails with "FILE:L:C: KEY: " followed by frag. */
static void
expect_error(const char *yaml, int line, int col, const char *key,
             const char *frag)
{
  struct config *cfg = load_text(yaml);
  char prefix[256];
  const char *at;

  if (cfg != NULL)
    config_unref(cfg);
  assert_null(cfg);
  snprintf(prefix, sizeof(prefix), "%s:%d:%d: %s: ", path, line, col, key);
  at = strstr(err, prefix);
  if (at == NULL)
    fail_msg("want \"%s\" in:\n%s", prefix, err);
  if (frag && strstr(at, frag) == NULL)
    fail_msg("want \"%s\" after \"%s\" in:\n%s", frag, prefix, err);
}

static int
setup(void **state)
{
  size_t n;

  (void)state;
  n = (size_t)snprintf(tmpdir, sizeof(tmpdir), "/tmp/camgate-test-rules-");
  memset(tmpdir + n, 'X', 6);
  tmpdir[n + 6] = '\0';
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  snprintf(path, sizeof(path), "%s/t.yaml", tmpdir);
  return 0;
}

static int
teardown(void **state)
{
  (void)state;
  unlink(path);
  return rmdir(tmpdir);
}

/* The example, as README.md shows it. */
static const char example[] =
  "timezone: Europe/Berlin\n"
  "cameras:\n"
  "  - id: door\n"
  "    name: Front door\n"
  "  - id: garden\n"
  "  - id: nvr\n"
  "    channel: {from: subject, pattern: 'CH(\\d+)'}\n"
  "    defaults: {cooldown: 2m, priority: low}\n"
  "    limit: {rate: 30/h, daily_cap: 200}\n"
  "backends:\n"
  "  - name: ha\n"
  "    type: mqtt\n"
  "  - name: phone\n"
  "    type: mqtt\n"
  "    defaults: {snapshot: 640x480, cooldown: 1m, rate: 10/h}\n"
  "rules:\n"
  "  - name: home assistant\n"
  "    backends: [ha]\n"
  "    continue: true\n"
  "  - name: person at the door\n"
  "    match:\n"
  "      camera: door\n"
  "      kind: person\n"
  "      labels: {channel: \"D*\", zone: [porch, \"gate?\"]}\n"
  "      days: [mon-fri, sun]\n"
  "      time: [\"23:00-06:30\", \"12:00-13:00\"]\n"
  "      snapshot: true\n"
  "    backends:\n"
  "      - backend: phone\n"
  "        priority: high\n"
  "        title: \"{camera_name}: {kind} at {time}\"\n"
  "        message: \"{text} ({label.zone})\"\n"
  "        cooldown: 0\n"
  "        burst: 3\n"
  "        daily_cap: 50\n"
  "        summary: true\n"
  "      - ha\n"
  "  - name: garden\n"
  "    match: {camera: garden}\n"
  "    drop: true\n"
  "  - name: rest\n"
  "    backends: [phone]\n";

static void
test_rules_loaded(void **state)
{
  struct config *cfg = load_ok(example);
  const struct rule_conf *r;

  (void)state;
  assert_string_equal(cfg->timezone, "Europe/Berlin");
  assert_string_equal(g_time_zone_get_identifier(cfg->tz), "Europe/Berlin");
  assert_int_equal(cfg->nrules, 4);
  r = &cfg->rules[1];
  assert_int_equal(r->nlabels, 2);
  assert_string_equal(r->labels[0].key, "channel");
  assert_string_equal(r->labels[0].values.globs[0], "D*");
  assert_string_equal(r->labels[1].key, "zone");
  assert_int_equal(r->labels[1].values.n, 2);
  assert_string_equal(r->labels[1].values.globs[1], "gate?");
  assert_int_equal(r->days.n, 2);
  assert_string_equal(r->days.globs[0], "mon-fri");
  assert_int_equal(r->time.n, 2);
  assert_string_equal(r->time.globs[1], "12:00-13:00");
  assert_int_equal(r->snapshot, MATCH_SNAPSHOT_YES);
  assert_int_equal(r->nbackends, 2);
  assert_string_equal(r->backends[0], "phone");
  assert_string_equal(r->backends[1], "ha");
  assert_string_equal(r->actions[0].priority, "high");
  assert_string_equal(r->actions[0].message, "{text} ({label.zone})");
  assert_int_equal(r->actions[0].set,
                   ACT_COOLDOWN | ACT_BURST | ACT_DAILY_CAP | ACT_SUMMARY);
  assert_int_equal(r->actions[0].cooldown, 0);
  assert_null(r->actions[1].priority);
  assert_int_equal(r->actions[1].set, 0);
  assert_int_equal(cfg->rules[0].snapshot, MATCH_SNAPSHOT_ANY);
  assert_string_equal(cfg->backends[1].defaults.snapshot, "640x480");
  assert_int_equal(cfg->backends[1].defaults.set, ACT_COOLDOWN);
  assert_int_equal(cfg->cameras[2].limit.daily_cap, 200);
  config_unref(cfg);
}

static void
test_action_merge(void **state)
{
  struct config *cfg = load_ok(example);
  struct action a;

  (void)state;
  /* Built in < backend defaults < camera defaults < the rule's item.
   * The rule's "cooldown: 0" clears the backend's 1m. */
  assert_int_equal(config_action(cfg, "person at the door", "phone",
                                 "door", &a), 0);
  assert_string_equal(a.priority, "high");
  assert_string_equal(a.title, "{camera_name}: {kind} at {time}");
  assert_int_equal(a.snapshot, 1);
  assert_int_equal(a.snapshot_w, 640);
  assert_int_equal(a.snapshot_h, 480);
  assert_int_equal(a.cooldown, 0);
  assert_int_equal(a.rate_n, 10);
  assert_int_equal(a.rate_per, 3600);
  assert_int_equal(a.burst, 3);
  assert_int_equal(a.daily_cap, 50);
  assert_int_equal(a.summary, 1);
  /* "phone" is an mqtt backend here: its limits are not applied. */
  assert_int_equal(a.limited, 0);

  /* A camera's defaults win over the backend's; a burst left out is one
   * period's worth. An NVR channel's camera finds its NVR. */
  assert_int_equal(config_action(cfg, "rest", "phone", "nvr-7", &a), 0);
  assert_string_equal(a.priority, "low");
  assert_int_equal(a.cooldown, 120);
  assert_int_equal(a.burst, 10);
  assert_null(a.title);
  assert_int_equal(config_action(cfg, "rest", "phone", "garden", &a), 0);
  assert_string_equal(a.priority, "default");
  assert_int_equal(a.cooldown, 60);

  /* A rule that does not name the backend: -1, with the defaults. */
  assert_int_equal(config_action(cfg, "garden", "phone", "garden", &a), -1);
  assert_int_equal(a.snapshot_w, 640);
  assert_int_equal(config_action(cfg, "nope", "nope", "nope", &a), -1);
  assert_string_equal(a.priority, "default");
  assert_int_equal(a.snapshot, 1);
  assert_int_equal(a.snapshot_w, 0);
  config_unref(cfg);
}

static void
test_camera_for_and_limit(void **state)
{
  struct config *cfg = load_ok(example);
  struct action a;

  (void)state;
  assert_string_equal(config_camera_for(cfg, "door")->id, "door");
  assert_string_equal(config_camera_for(cfg, "nvr-12")->id, "nvr");
  assert_string_equal(config_camera_for(cfg, "nvr")->id, "nvr");
  assert_null(config_camera_for(cfg, "porch"));
  config_camera_limit(cfg, "nvr-3", &a);
  assert_int_equal(a.limited, 1);
  assert_int_equal(a.rate_n, 30);
  assert_int_equal(a.burst, 30);
  assert_int_equal(a.daily_cap, 200);
  assert_int_equal(a.cooldown, 0);
  config_camera_limit(cfg, "door", &a);
  assert_int_equal(a.limited, 0);
  config_unref(cfg);
}

static void
test_old_config_still_valid(void **state)
{
  struct config *cfg = load_ok("backends:\n"
                               "  - {name: ha, type: mqtt}\n"
                               "rules:\n"
                               "  - match: {camera: \"*\"}\n"
                               "    backends: [ha]\n");
  struct action a;

  (void)state;
  assert_null(cfg->timezone);
  assert_non_null(cfg->tz);
  assert_int_equal(cfg->rules[0].nbackends, 1);
  assert_string_equal(cfg->rules[0].backends[0], "ha");
  assert_int_equal(cfg->rules[0].nlabels, 0);
  assert_int_equal(config_action(cfg, "rule 1", "ha", "cam", &a), 0);
  assert_string_equal(a.priority, "default");
  assert_int_equal(a.limited, 0);
  config_unref(cfg);
}

static void
test_value_parsers(void **state)
{
  unsigned mask = 0;
  int a, b;

  (void)state;
  assert_int_equal(config_parse_rate("10/h", &a, &b), 0);
  assert_int_equal(a, 10);
  assert_int_equal(b, 3600);
  assert_int_equal(config_parse_rate("3/5m", &a, &b), 0);
  assert_int_equal(b, 300);
  assert_int_equal(config_parse_rate("100/1d", &a, &b), 0);
  assert_int_equal(config_parse_rate("0/h", &a, &b), -1);
  assert_int_equal(config_parse_rate("10", &a, &b), -1);
  assert_int_equal(config_parse_rate("10/week", &a, &b), -1);
  assert_int_equal(config_parse_rate("10/31d", &a, &b), -1);
  assert_int_equal(config_parse_window("23:00-06:30", &a, &b), 0);
  assert_int_equal(a, 23 * 60);
  assert_int_equal(b, 6 * 60 + 30);
  assert_int_equal(config_parse_window("00:00-24:00", &a, &b), 0);
  assert_int_equal(b, 24 * 60);
  assert_int_equal(config_parse_window("23:00-00:00", &a, &b), 0);
  assert_int_equal(config_parse_window("7:00-08:00", &a, &b), -1);
  assert_int_equal(config_parse_window("24:00-08:00", &a, &b), -1);
  assert_int_equal(config_parse_window("08:00-08:00", &a, &b), -1);
  assert_int_equal(config_parse_window("08:60-09:00", &a, &b), -1);
  assert_int_equal(config_parse_window("08:00", &a, &b), -1);
  assert_int_equal(config_parse_days("mon", &mask), 0);
  assert_int_equal(mask, 0x01);
  mask = 0;
  assert_int_equal(config_parse_days("fri-mon", &mask), 0);
  assert_int_equal(mask, 0x71);
  mask = 0;
  assert_int_equal(config_parse_days("Sat-Sun", &mask), 0);
  assert_int_equal(mask, 0x60);
  assert_int_equal(config_parse_days("monday", &mask), -1);
  assert_int_equal(config_parse_days("mon-", &mask), -1);
  assert_int_equal(config_parse_snapshot("640x480", &a, &b), 0);
  assert_int_equal(a, 640);
  assert_int_equal(b, 480);
  assert_int_equal(config_parse_snapshot("full", &a, &b), 0);
  assert_int_equal(a, 0);
  assert_int_equal(config_parse_snapshot("none", &a, &b), 0);
  assert_int_equal(a, -1);
  assert_int_equal(config_parse_snapshot("640x", &a, &b), -1);
  assert_int_equal(config_parse_snapshot("0x480", &a, &b), -1);
  assert_int_equal(config_parse_snapshot("640x480x", &a, &b), -1);
}

static const char head[] =
  "backends:\n"
  "  - {name: ha, type: mqtt}\n"
  "rules:\n";

/* Loads head + rule text; the rule starts on line 4. */
static void
expect_rule_error(const char *rule, int line, int col, const char *key,
                  const char *frag)
{
  char yaml[2048];

  snprintf(yaml, sizeof(yaml), "%s%s", head, rule);
  expect_error(yaml, line, col, key, frag);
}

static void
test_err_match(void **state)
{
  (void)state;
  expect_rule_error("  - match: {time: \"25:00-06:00\"}\n"
                    "    backends: [ha]\n",
                    4, 19, "rules[0].match.time",
                    "expected a time window like 23:00-06:30");
  expect_rule_error("  - match:\n"
                    "      days: [mon, funday]\n"
                    "    backends: [ha]\n",
                    5, 19, "rules[0].match.days[1]",
                    "found \"funday\"");
  expect_rule_error("  - match: {labels: [a, b]}\n"
                    "    backends: [ha]\n",
                    4, 21, "rules[0].match.labels",
                    "expected a mapping of label names to globs");
  expect_rule_error("  - match:\n"
                    "      labels:\n"
                    "        zone: {a: b}\n"
                    "    backends: [ha]\n",
                    6, 15, "rules[0].match.labels.zone",
                    "expected a glob or a list of globs");
  expect_rule_error("  - match: {snapshot: maybe}\n"
                    "    backends: [ha]\n",
                    4, 23, "rules[0].match.snapshot",
                    "expected one of true, yes, false, no");
}

static void
test_err_actions(void **state)
{
  (void)state;
  expect_rule_error("  - backends:\n"
                    "      - {backend: ha, priority: loud}\n",
                    5, 33, "rules[0].backends[0].priority",
                    "expected a known priority (min, low, default, high, "
                    "urgent), found \"loud\"");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        title: \"{camra} saw {kind}\"\n",
                    6, 16, "rules[0].backends[0].title",
                    "expected a known {field}");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        message: \"{kind\"\n",
                    6, 18, "rules[0].backends[0].message",
                    "found an unclosed '{'");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        rate: 10/week\n",
                    6, 15, "rules[0].backends[0].rate",
                    "expected a rate like 10/h");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        cooldown: 8d\n",
                    6, 19, "rules[0].backends[0].cooldown",
                    "expected a duration from 0s to 7d");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        burst: 0\n",
                    6, 16, "rules[0].backends[0].burst",
                    "expected an integer from 1 to 10000");
  expect_rule_error("  - backends:\n"
                    "      - backend: ha\n"
                    "        snapshot: huge\n",
                    6, 19, "rules[0].backends[0].snapshot",
                    "expected a snapshot size like 640x480");
  expect_rule_error("  - backends:\n"
                    "      - {backend: ha, colour: red}\n",
                    5, 23, "rules[0].backends[0].colour",
                    "found unknown key \"colour\"");
  expect_rule_error("  - backends:\n"
                    "      - {priority: high}\n",
                    5, 9, "rules[0].backends[0].backend",
                    "expected a string (required), found nothing");
  expect_rule_error("  - backends:\n"
                    "      - ha\n"
                    "      - {backend: phone}\n",
                    6, 9, "rules[0].backends[1]",
                    "expected the name of a backend, found \"phone\"");
  expect_rule_error("  - backends: ha\n",
                    4, 15, "rules[0].backends", "expected a list");
  expect_rule_error("  - backends: [[ha]]\n",
                    4, 16, "rules[0].backends[0]",
                    "expected a backend name or a mapping");
}

static void
test_err_defaults_and_zone(void **state)
{
  (void)state;
  expect_error("timezone: Mars/Olympus\n", 1, 11, "timezone",
               "expected a time zone name");
  expect_error("backends:\n"
               "  - name: ha\n"
               "    type: mqtt\n"
               "    defaults: {backend: ha}\n",
               4, 16, "backends[0].defaults.backend",
               "found unknown key \"backend\"");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    defaults: {daily_cap: 0}\n",
               3, 27, "cameras[0].defaults.daily_cap",
               "expected an integer from 1 to 100000");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    limit: {priority: high}\n",
               3, 13, "cameras[0].limit.priority",
               "found unknown key \"priority\"");
}

static void
test_templates(void **state)
{
  struct cam_event *ev = cam_event_new();
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");
  char found[96], buf[128];
  char *s;

  (void)state;
  assert_null(template_check("{camera}: {{x}} {label.zone}", found,
                             sizeof(found)));
  assert_non_null(template_check("{label.}", found, sizeof(found)));
  assert_string_equal(found, "\"{label.}\"");
  assert_non_null(template_check("a } b", found, sizeof(found)));
  cam_event_set(&ev->camera, "door");
  cam_event_set(&ev->kind, "person");
  cam_event_set(&ev->rule, "r1");
  cam_event_add_label(ev, "zone", "porch");
  ev->recv_time = 1796340600000LL;   /* 2026-12-03T23:30:00Z */
  s = template_expand("{camera_name} {kind} {time} {date} {{}} "
                      "{label.zone}{label.none} {rule} {x}", ev, berlin);
  assert_string_equal(s, "door person 00:30 2026-12-04 {} porch r1 {x}");
  free(s);
  template_folded(ev, berlin, buf, sizeof(buf));
  assert_string_equal(buf, "");
  ev->folded = 4;
  ev->folded_since = 1796340600000LL - 28 * 60 * 1000;
  template_folded(ev, berlin, buf, sizeof(buf));
  assert_string_equal(buf, "+4 more person events since 00:02");
  ev->folded = 1;
  template_folded(ev, NULL, buf, sizeof(buf));
  assert_string_equal(buf, "+1 more person event since 23:02");
  g_time_zone_unref(berlin);
  cam_event_free(ev);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rules_loaded),
    cmocka_unit_test(test_action_merge),
    cmocka_unit_test(test_camera_for_and_limit),
    cmocka_unit_test(test_old_config_still_valid),
    cmocka_unit_test(test_value_parsers),
    cmocka_unit_test(test_err_match),
    cmocka_unit_test(test_err_actions),
    cmocka_unit_test(test_err_defaults_and_zone),
    cmocka_unit_test(test_templates),
  };

  return cmocka_run_group_tests(tests, setup, teardown);
}
