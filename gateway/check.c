/* check.c - see check.h. */
#include "gateway/check.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backends/backend.h"
#include "gateway/log.h"
#include "gateway/router.h"
#include "ingest/kind.h"

#define CHECK_MAX_ROUTES 64
#define CHECK_TIME_LEN 64
#define CHECK_QUOTE_LEN 256

/* A made-up JPEG: enough for "has a snapshot". */
static const unsigned char check_jpeg[] = {0xff, 0xd8, 0xff, 0xd9};

static int
check_time(const struct config *cfg, const char *v, struct cam_event *ev)
{
  char buf[CHECK_TIME_LEN];
  GDateTime *dt;
  size_t n = strlen(v);

  if (n >= sizeof(buf) - 4)
    return -1;
  memcpy(buf, v, n + 1);
  if (n > 10 && buf[10] == ' ')
    buf[10] = 'T';
  /* GLib wants seconds; "2026-12-03T23:30" is what people write. */
  if (n == 16)
    memcpy(buf + 16, ":00", 4);
  dt = g_date_time_new_from_iso8601(buf, cfg->tz);
  if (dt == NULL)
    return -1;
  ev->recv_time = g_date_time_to_unix(dt) * 1000;
  ev->device_time = ev->recv_time;
  g_date_time_unref(dt);
  return 0;
}

static int
check_snapshot_arg(const char *v, struct cam_event *ev)
{
  if (strcasecmp(v, "yes") == 0 || strcasecmp(v, "true") == 0) {
    cam_event_add_attachment(ev, "snapshot.jpg", "image/jpeg", check_jpeg,
                             sizeof(check_jpeg));
    return 0;
  }
  return strcasecmp(v, "no") == 0 || strcasecmp(v, "false") == 0 ? 0 : -1;
}

/* Sets one key; returns 0, or -1 for a bad value, -2 for a bad key. */
static int
check_set(const struct config *cfg, struct cam_event *ev, const char *key,
          size_t klen, const char *v)
{
  static const struct { const char *key; size_t off; } fields[] = {
    {"camera", offsetof(struct cam_event, camera)},
    {"kind", offsetof(struct cam_event, kind)},
    {"source", offsetof(struct cam_event, source)},
    {"title", offsetof(struct cam_event, title)},
    {"text", offsetof(struct cam_event, text)},
  };

  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
    if (strlen(fields[i].key) == klen &&
        memcmp(key, fields[i].key, klen) == 0) {
      cam_event_set((char **)((char *)ev + fields[i].off), v);
      return 0;
    }
  }
  if (klen == 5 && memcmp(key, "state", 5) == 0)
    return event_state_parse(v, &ev->state);
  if (klen == 4 && memcmp(key, "time", 4) == 0)
    return check_time(cfg, v, ev);
  if (klen == 8 && memcmp(key, "snapshot", 8) == 0)
    return check_snapshot_arg(v, ev);
  if (klen > 6 && memcmp(key, "label.", 6) == 0) {
    char *k = xstrndup(key + 6, klen - 6);

    cam_event_add_label(ev, k, v);
    free(k);
    return 0;
  }
  return -2;
}

static void
check_defaults(const struct config *cfg, struct cam_event *ev)
{
  const struct camera_conf *cc = config_camera_for(cfg, ev->camera);

  if (ev->kind == NULL)
    cam_event_set(&ev->kind, "alert");
  if (ev->source == NULL)
    cam_event_set(&ev->source, "smtp");
  if (ev->camera_name == NULL)
    cam_event_set(&ev->camera_name, cc && cc->name ? cc->name : ev->camera);
  if (ev->recv_time == 0)
    ev->recv_time = ev->device_time = now_ms();
}

struct cam_event *
check_event_parse(const struct config *cfg, int n, char *const *args,
                  char *err, size_t errsz)
{
  struct cam_event *ev = cam_event_new();

  for (int i = 0; i < n; i++) {
    const char *eq = strchr(args[i], '=');
    int r = eq ? check_set(cfg, ev, args[i], (size_t)(eq - args[i]), eq + 1)
               : -2;

    if (r == 0)
      continue;
    snprintf(err, errsz, r == -2
             ? "unknown event key in '%s' (camera, kind, source, state, "
               "title, text, time, snapshot, label.NAME)"
             : "bad value in '%s'", args[i]);
    cam_event_free(ev);
    return NULL;
  }
  if (ev->camera == NULL || ev->camera[0] == '\0') {
    snprintf(err, errsz, "the event needs camera=ID");
    cam_event_free(ev);
    return NULL;
  }
  check_defaults(cfg, ev);
  return ev;
}

static const char *
check_quote(char *buf, size_t sz, const char *s)
{
  return s ? log_escape(buf, sz, s, strlen(s)) : "-";
}

static void
check_print_event(const struct config *cfg, const struct cam_event *ev,
                  FILE *f)
{
  char q[CHECK_QUOTE_LEN];
  GDateTime *utc = g_date_time_new_from_unix_utc(ev->recv_time / 1000);
  GDateTime *local = utc ? g_date_time_to_timezone(utc, cfg->tz) : NULL;
  gchar *when = local ? g_date_time_format_iso8601(local) : NULL;

  fprintf(f, "event camera=%s camera_name=%s kind=%s source=%s state=%s "
          "time=%s zone=%s snapshot=%s", ev->camera,
          check_quote(q, sizeof(q), ev->camera_name), ev->kind, ev->source,
          event_state_name(ev->state), when ? when : "?",
          g_time_zone_get_identifier(cfg->tz),
          cam_event_snapshot(ev) ? "yes" : "no");
  for (size_t i = 0; i < ev->nlabels; i++)
    fprintf(f, " label.%s=%s", ev->labels[i].key,
            check_quote(q, sizeof(q), ev->labels[i].value));
  fputc('\n', f);
  g_free(when);
  if (local)
    g_date_time_unref(local);
  if (utc)
    g_date_time_unref(utc);
}

/* Walks the rules as the router does, saying what each one does. */
static void
check_print_rules(const struct config *cfg, const struct cam_event *ev,
                  FILE *f)
{
  int reached = 1;

  for (size_t i = 0; i < cfg->nrules; i++) {
    const struct rule_conf *r = &cfg->rules[i];
    const char *why;
    char q[CHECK_QUOTE_LEN];

    fprintf(f, "rule %s ", check_quote(q, sizeof(q), r->name));
    if (!reached) {
      fputs("not reached\n", f);
      continue;
    }
    why = router_rule_mismatch(r, ev, cfg->tz);
    if (why) {
      fprintf(f, "no (%s)\n", why);
      continue;
    }
    fputs("matches ->", f);
    if (r->drop)
      fputs(" drop", f);
    for (size_t j = 0; j < r->nbackends; j++)
      fprintf(f, "%s%s", j ? "," : " ", r->backends[j]);
    fputs(r->cont && !r->drop ? " (continue)\n" : "\n", f);
    reached = r->cont && !r->drop;
  }
}

static void
check_secs(char *buf, size_t sz, int s)
{
  if (s <= 0)
    snprintf(buf, sz, "-");
  else if (s % 86400 == 0)
    snprintf(buf, sz, "%dd", s / 86400);
  else if (s % 3600 == 0)
    snprintf(buf, sz, "%dh", s / 3600);
  else if (s % 60 == 0)
    snprintf(buf, sz, "%dm", s / 60);
  else
    snprintf(buf, sz, "%ds", s);
}

static void
check_print_limits(const struct action *a, FILE *f)
{
  char cool[32], per[32];

  check_secs(cool, sizeof(cool), a->cooldown);
  check_secs(per, sizeof(per), a->rate_per);
  fprintf(f, " cooldown=%s", cool);
  if (a->rate_n)
    fprintf(f, " rate=%d/%s burst=%d", a->rate_n, per, a->burst);
  else
    fputs(" rate=- burst=-", f);
  if (a->daily_cap)
    fprintf(f, " daily_cap=%d", a->daily_cap);
  else
    fputs(" daily_cap=-", f);
}

static void
check_print_route(const struct config *cfg, const struct route *rt, FILE *f)
{
  const struct backend_conf *bc = config_backend(cfg, rt->backend);
  const struct backend_ops *ops = bc ? backend_ops_for(bc->type, NULL, 0)
                                     : NULL;
  const struct action *a = &rt->action;
  char q[CHECK_QUOTE_LEN];

  fprintf(f, "route %s rule=%s type=%s", rt->backend,
          check_quote(q, sizeof(q), rt->rule), ops ? ops->type : "?");
  if (!rt->limited) {
    fputs(" limits=none (every event and state goes out)\n", f);
    return;
  }
  fprintf(f, " priority=%s", a->priority);
  fprintf(f, " title=%s", check_quote(q, sizeof(q), a->title));
  fprintf(f, " message=%s", check_quote(q, sizeof(q), a->message));
  if (!a->snapshot)
    fputs(" snapshot=none", f);
  else if (a->snapshot_w == 0)
    fputs(" snapshot=default", f);
  else
    fprintf(f, " snapshot=%dx%d", a->snapshot_w, a->snapshot_h);
  check_print_limits(a, f);
  fprintf(f, " summary=%s\n", a->summary ? "yes" : "no");
}

void
check_event_print(const struct config *cfg, const struct cam_event *ev,
                  FILE *f)
{
  struct route routes[CHECK_MAX_ROUTES];
  struct action cam;
  size_t n;

  check_print_event(cfg, ev, f);
  if (config_camera_for(cfg, ev->camera) == NULL)
    fprintf(f, "warning: %s: cameras: no camera has the id %s (nor is it "
            "a channel of an NVR there); rules are walked all the same, but "
            "a real alert only ever comes from a configured camera\n",
            cfg->path, ev->camera);
  check_print_rules(cfg, ev, f);
  n = router_route(cfg, ev, routes, CHECK_MAX_ROUTES);
  if (n == 0)
    fputs("route none\n", f);
  for (size_t i = 0; i < n; i++)
    check_print_route(cfg, &routes[i], f);
  config_camera_limit(cfg, ev->camera, &cam);
  if (cam.limited) {
    fprintf(f, "camera %s limit", ev->camera);
    check_print_limits(&cam, f);
    fputc('\n', f);
  }
}

/* Whether some alert can have kind k: a built-in one, "alert", or one a
 * pattern of smtp.kinds gives. */
static int
check_kind_made(const struct config *cfg, const char *k)
{
  if (kind_is_builtin(k))
    return 1;
  for (size_t i = 0; i < cfg->smtp.nkinds; i++)
    if (strcmp(cfg->smtp.kinds[i].kind, k) == 0)
      return 1;
  return 0;
}

int
check_print_kind_warnings(const struct config *cfg, FILE *f)
{
  int n = 0;

  for (size_t i = 0; i < cfg->nrules; i++) {
    const struct match_list *m = &cfg->rules[i].kind;

    for (size_t j = 0; j < m->n; j++) {
      if (strpbrk(m->globs[j], "*?[") || check_kind_made(cfg, m->globs[j]))
        continue;
      fprintf(f, "warning: %s: rules[%zu].match.kind[%zu]: no alert has the "
              "kind \"%s\" (neither a built-in kind nor one of smtp.kinds), "
              "so it never matches; check the spelling\n", cfg->path, i, j,
              m->globs[j]);
      n++;
    }
  }
  for (size_t i = 0; i < cfg->ncameras; i++) {
    const struct camera_conf *cc = &cfg->cameras[i];

    for (size_t j = 0; j < cc->nkinds; j++) {
      if (check_kind_made(cfg, cc->kinds[j]))
        continue;
      fprintf(f, "warning: %s: cameras[%zu].kinds[%zu]: no alert has the "
              "kind \"%s\", so Home Assistant shows a sensor that never "
              "turns on; check the spelling\n", cfg->path, i, j,
              cc->kinds[j]);
      n++;
    }
  }
  return n;
}
