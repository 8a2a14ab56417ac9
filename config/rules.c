/* rules.c - the values of rules, and a rule's merged action.
 *
 * The loader (config.c) checks each value with the parsers here, so a
 * mistake is reported with its line and column; the router and
 * config_action() parse the same text again when they need the numbers,
 * which keeps the loaded structs plain and the parsing in one place. */
#include "config/config.h"

#include <ctype.h>
#include <fnmatch.h>
#include <string.h>
#include <strings.h>

#define RATE_MAX_N 100000
#define RATE_MAX_PER (30 * 86400)
#define SNAPSHOT_MAX_SIDE_CONF 16384
#define GLOB_LEN 512

static const char *const day_names[] = {
  "mon", "tue", "wed", "thu", "fri", "sat", "sun"
};

/* Reads 1 to 6 digits; returns the value or -1. */
static long
rules_number(const char *s, const char **end)
{
  long v = 0;
  int n = 0;

  while (isdigit((unsigned char)s[n]) && n < 7)
    v = v * 10 + (s[n++] - '0');
  if (n == 0 || n > 6)
    return -1;
  *end = s + n;
  return v;
}

int
config_parse_rate(const char *s, int *n, int *per)
{
  const char *slash;
  long count, secs;

  if (s == NULL || (count = rules_number(s, &slash)) < 1 ||
      count > RATE_MAX_N || *slash != '/')
    return -1;
  slash++;
  /* "10/h" reads as "10/1h". */
  if (slash[0] != '\0' && slash[1] == '\0' && strchr("smhd", slash[0])) {
    char one[3] = {'1', slash[0], '\0'};

    secs = config_parse_duration(one);
  } else {
    secs = config_parse_duration(slash);
  }
  if (secs < 1 || secs > RATE_MAX_PER)
    return -1;
  *n = (int)count;
  *per = (int)secs;
  return 0;
}

/* "HH:MM" with HH 00..24 (24 only as 24:00); returns minutes or -1. */
static int
rules_clock(const char *s, size_t len)
{
  int h, m;

  if (len != 5 || !isdigit((unsigned char)s[0]) ||
      !isdigit((unsigned char)s[1]) || s[2] != ':' ||
      !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
    return -1;
  h = (s[0] - '0') * 10 + (s[1] - '0');
  m = (s[3] - '0') * 10 + (s[4] - '0');
  if (h > 24 || m > 59 || (h == 24 && m != 0))
    return -1;
  return h * 60 + m;
}

int
config_parse_window(const char *s, int *from, int *to)
{
  const char *dash;
  int a, b;

  if (s == NULL || (dash = strchr(s, '-')) == NULL)
    return -1;
  a = rules_clock(s, (size_t)(dash - s));
  b = rules_clock(dash + 1, strlen(dash + 1));
  if (a < 0 || b < 0 || a == b || a == 24 * 60)
    return -1;
  *from = a;
  *to = b;
  return 0;
}

static int
rules_day(const char *s, size_t len)
{
  if (len != 3)
    return -1;
  for (int i = 0; i < 7; i++)
    if (strncasecmp(s, day_names[i], 3) == 0)
      return i;
  return -1;
}

int
config_parse_days(const char *s, unsigned *mask)
{
  const char *dash;
  int a, b;

  if (s == NULL)
    return -1;
  dash = strchr(s, '-');
  a = rules_day(s, dash ? (size_t)(dash - s) : strlen(s));
  b = dash ? rules_day(dash + 1, strlen(dash + 1)) : a;
  if (a < 0 || b < 0)
    return -1;
  /* A range may wrap past Sunday: "sat-mon". */
  for (int d = a, i = 0; i < 7; d = (d + 1) % 7, i++) {
    *mask |= 1u << d;
    if (d == b)
      break;
  }
  return 0;
}

int
config_parse_snapshot(const char *s, int *w, int *h)
{
  static const struct { const char *word; int box; } words[] = {
    {"full", 0}, {"true", 0}, {"yes", 0},
    {"none", -1}, {"false", -1}, {"no", -1}
  };
  const char *x;
  long a, b;

  if (s == NULL)
    return -1;
  for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
    if (strcasecmp(s, words[i].word) == 0) {
      *w = *h = words[i].box;
      return 0;
    }
  }
  a = rules_number(s, &x);
  if (a < 1 || a > SNAPSHOT_MAX_SIDE_CONF || *x != 'x')
    return -1;
  b = rules_number(x + 1, &x);
  if (b < 1 || b > SNAPSHOT_MAX_SIDE_CONF || *x != '\0')
    return -1;
  *w = (int)a;
  *h = (int)b;
  return 0;
}

/* ---- which camera an event's id belongs to ---- */

/* Appends s to the glob at *n with glob characters escaped. */
static void
glob_put(char *g, size_t *n, const char *s, size_t len)
{
  for (size_t i = 0; i < len && *n + 3 < GLOB_LEN; i++) {
    if (strchr("*?[]\\", s[i]))
      g[(*n)++] = '\\';
    g[(*n)++] = s[i];
  }
}

/* The channel id template of cc as a glob: "{camera}-{1}" is "nvr-*". */
static void
channel_glob(const struct camera_conf *cc, char *g)
{
  const char *t = cc->channel_id ? cc->channel_id : "{camera}-{1}";
  size_t n = 0;

  while (*t && n + 3 < GLOB_LEN) {
    if (strncmp(t, "{camera}", 8) == 0) {
      glob_put(g, &n, cc->id, strlen(cc->id));
      t += 8;
    } else if (strncmp(t, "{name}", 6) == 0) {
      glob_put(g, &n, cc->name, strlen(cc->name));
      t += 6;
    } else if (t[0] == '{' && t[1] >= '1' && t[1] <= '9' && t[2] == '}') {
      g[n++] = '*';
      t += 3;
    } else {
      glob_put(g, &n, t, 1);
      t++;
    }
  }
  g[n] = '\0';
}

const struct camera_conf *
config_camera_for(const struct config *cfg, const char *camera)
{
  const struct camera_conf *cc;
  char glob[GLOB_LEN];

  if (cfg == NULL || camera == NULL)
    return NULL;
  cc = config_camera_by_id(cfg, camera);
  if (cc)
    return cc;
  for (size_t i = 0; i < cfg->ncameras; i++) {
    cc = &cfg->cameras[i];
    if (cc->channel_from == CHANNEL_NONE || cc->channel_re == NULL)
      continue;
    channel_glob(cc, glob);
    if (fnmatch(glob, camera, 0) == 0)
      return cc;
  }
  return NULL;
}

/* ---- merging ---- */

static void
action_apply(struct action *a, const struct action_conf *c, int *burst_set)
{
  int w, h;

  if (c->priority)
    a->priority = c->priority;
  if (c->title)
    a->title = c->title;
  if (c->message)
    a->message = c->message;
  if (c->snapshot && config_parse_snapshot(c->snapshot, &w, &h) == 0) {
    a->snapshot = w >= 0;
    a->snapshot_w = w > 0 ? w : 0;
    a->snapshot_h = h > 0 ? h : 0;
  }
  if (c->rate && config_parse_rate(c->rate, &a->rate_n, &a->rate_per) < 0)
    a->rate_n = a->rate_per = 0;
  if (c->set & ACT_COOLDOWN)
    a->cooldown = c->cooldown;
  if (c->set & ACT_BURST) {
    a->burst = c->burst;
    *burst_set = 1;
  }
  if (c->set & ACT_DAILY_CAP)
    a->daily_cap = c->daily_cap;
  if (c->set & ACT_SUMMARY)
    a->summary = c->summary;
}

/* A bucket without a burst holds one period's worth. */
static void
action_finish(struct action *a, int burst_set)
{
  if (a->rate_n == 0)
    a->burst = 0;
  else if (!burst_set || a->burst < 1)
    a->burst = a->rate_n;
}

static const struct action_conf *
rule_action(const struct config *cfg, const char *rule, const char *backend,
            int *named)
{
  *named = 0;
  for (size_t i = 0; rule && backend && i < cfg->nrules; i++) {
    const struct rule_conf *rc = &cfg->rules[i];

    if (rc->name == NULL || strcmp(rc->name, rule) != 0)
      continue;
    for (size_t j = 0; j < rc->nbackends; j++) {
      if (rc->backends[j] && strcmp(rc->backends[j], backend) == 0) {
        *named = 1;
        return rc->actions ? &rc->actions[j] : NULL;
      }
    }
    return NULL;
  }
  return NULL;
}

int
config_keeps_raw(const struct config *cfg)
{
  for (size_t i = 0; cfg && i < cfg->nbackends; i++)
    if (cfg->backends[i].type == BACKEND_EMAIL &&
        cfg->backends[i].u.email.mode == EMAIL_MODE_FORWARD)
      return 1;
  return 0;
}

int
config_action(const struct config *cfg, const char *rule,
              const char *backend, const char *camera, struct action *out)
{
  const struct backend_conf *bc = config_backend(cfg, backend);
  const struct camera_conf *cc = config_camera_for(cfg, camera);
  const struct action_conf *rc;
  int burst_set = 0;
  int named;

  memset(out, 0, sizeof(*out));
  out->priority = "default";
  out->snapshot = 1;
  out->limited = bc && bc->type != BACKEND_MQTT;
  rc = rule_action(cfg, rule, backend, &named);
  if (bc)
    action_apply(out, &bc->defaults, &burst_set);
  if (cc)
    action_apply(out, &cc->defaults, &burst_set);
  if (rc)
    action_apply(out, rc, &burst_set);
  action_finish(out, burst_set);
  return named ? 0 : -1;
}

void
config_camera_limit(const struct config *cfg, const char *camera,
                    struct action *out)
{
  const struct camera_conf *cc = config_camera_for(cfg, camera);
  int burst_set = 0;

  memset(out, 0, sizeof(*out));
  if (cc == NULL)
    return;
  action_apply(out, &cc->limit, &burst_set);
  action_finish(out, burst_set);
  out->summary = 0;
  out->limited = out->cooldown || out->rate_n || out->daily_cap;
}
