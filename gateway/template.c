/* template.c - see template.h. */
#include "gateway/template.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/log.h"

#define TEMPLATE_FIELD_MAX 64     /* longest {field} between the braces */
#define TEMPLATE_TIME_LEN 64

enum tfield {
  TF_CAMERA, TF_CAMERA_NAME, TF_KIND, TF_STATE, TF_SOURCE, TF_ID, TF_RULE,
  TF_TITLE, TF_TEXT, TF_TIME, TF_DATE, TF_DATETIME, TF_LABEL, TF_NONE
};

static const char *const tfield_names[] = {
  [TF_CAMERA] = "camera", [TF_CAMERA_NAME] = "camera_name",
  [TF_KIND] = "kind", [TF_STATE] = "state", [TF_SOURCE] = "source",
  [TF_ID] = "id", [TF_RULE] = "rule", [TF_TITLE] = "title",
  [TF_TEXT] = "text", [TF_TIME] = "time", [TF_DATE] = "date",
  [TF_DATETIME] = "datetime"
};

/* Which field name (len bytes) is; "label.X" needs a non-empty X. */
static enum tfield
template_field(const char *name, size_t len)
{
  if (len > 6 && memcmp(name, "label.", 6) == 0)
    return TF_LABEL;
  for (int i = 0; i < TF_LABEL; i++)
    if (strlen(tfield_names[i]) == len &&
        memcmp(tfield_names[i], name, len) == 0)
      return (enum tfield)i;
  return TF_NONE;
}

const char *
template_check(const char *tmpl, char *found, size_t foundsz)
{
  const char *p = tmpl;

  if (foundsz)
    found[0] = '\0';
  while (*p) {
    const char *close;

    if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
      p += 2;
      continue;
    }
    if (*p == '}') {
      snprintf(found, foundsz, "a lone '}'");
      return "'}}' for a brace, or a {field}";
    }
    if (*p != '{') {
      p++;
      continue;
    }
    close = strchr(p + 1, '}');
    if (close == NULL || close - p - 1 > TEMPLATE_FIELD_MAX) {
      snprintf(found, foundsz, "an unclosed '{'");
      return "'{{' for a brace, or a {field}";
    }
    if (template_field(p + 1, (size_t)(close - p - 1)) == TF_NONE) {
      log_escape(found, foundsz, p, (size_t)(close - p + 1));
      return "a known {field}: camera, camera_name, kind, state, source, "
             "id, rule, title, text, time, date, datetime, label.X";
    }
    p = close + 1;
  }
  return NULL;
}

static int64_t
template_when(const struct cam_event *ev)
{
  return ev->device_time > 0 ? ev->device_time : ev->recv_time;
}

static void
template_time(int64_t ms, GTimeZone *tz, const char *fmt, char *buf,
              size_t bufsz)
{
  GDateTime *utc = g_date_time_new_from_unix_utc(ms / 1000);
  GDateTime *local = NULL;
  gchar *s = NULL;

  if (utc)
    local = tz ? g_date_time_to_timezone(utc, tz) : g_date_time_ref(utc);
  if (local)
    s = g_date_time_format(local, fmt);
  snprintf(buf, bufsz, "%s", s ? s : "?");
  g_free(s);
  if (local)
    g_date_time_unref(local);
  if (utc)
    g_date_time_unref(utc);
}

/* The value of field f for ev; buf holds formatted ones. Never NULL. */
static const char *
template_value(enum tfield f, const char *name, size_t len,
              const struct cam_event *ev, GTimeZone *tz, char *buf,
              size_t bufsz)
{
  static const char *const fmts[] = {
    [TF_TIME] = "%H:%M", [TF_DATE] = "%Y-%m-%d",
    [TF_DATETIME] = "%Y-%m-%d %H:%M:%S %Z"
  };
  const char *v = NULL;
  char key[TEMPLATE_FIELD_MAX + 1];

  switch (f) {
  case TF_CAMERA: v = ev->camera; break;
  case TF_CAMERA_NAME: v = ev->camera_name ? ev->camera_name : ev->camera;
    break;
  case TF_KIND: v = ev->kind; break;
  case TF_STATE: v = event_state_name(ev->state); break;
  case TF_SOURCE: v = ev->source; break;
  case TF_RULE: v = ev->rule; break;
  case TF_TITLE: v = ev->title; break;
  case TF_TEXT: v = ev->text; break;
  case TF_ID:
    snprintf(buf, bufsz, "%" PRId64, ev->id);
    return buf;
  case TF_TIME:
  case TF_DATE:
  case TF_DATETIME:
    template_time(template_when(ev), tz, fmts[f], buf, bufsz);
    return buf;
  case TF_LABEL:
    snprintf(key, sizeof(key), "%.*s", (int)(len - 6), name + 6);
    v = cam_event_label(ev, key);
    break;
  case TF_NONE:
    break;
  }
  return v ? v : "";
}

char *
template_expand(const char *tmpl, const struct cam_event *ev,
                GTimeZone *tz)
{
  GString *out = g_string_new(NULL);
  const char *p = tmpl ? tmpl : "";
  char *r;

  while (*p) {
    char buf[TEMPLATE_TIME_LEN];
    const char *close = NULL;
    enum tfield f = TF_NONE;

    if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
      g_string_append_c(out, *p);
      p += 2;
      continue;
    }
    if (*p == '{')
      close = strchr(p + 1, '}');
    if (close && close - p - 1 <= TEMPLATE_FIELD_MAX)
      f = template_field(p + 1, (size_t)(close - p - 1));
    if (f == TF_NONE) {
      g_string_append_c(out, *p++);
      continue;
    }
    g_string_append(out, template_value(f, p + 1, (size_t)(close - p - 1),
                                        ev, tz, buf, sizeof(buf)));
    p = close + 1;
  }
  r = xstrdup(out->str);
  g_string_free(out, TRUE);
  return r;
}

void
template_folded(const struct cam_event *ev, GTimeZone *tz, char *buf,
                size_t bufsz)
{
  char since[TEMPLATE_TIME_LEN];

  if (bufsz == 0)
    return;
  buf[0] = '\0';
  if (ev->folded <= 0)
    return;
  template_time(ev->folded_since, tz, "%H:%M", since, sizeof(since));
  snprintf(buf, bufsz, "+%d more %s event%s since %s", ev->folded,
           ev->kind ? ev->kind : "alert", ev->folded == 1 ? "" : "s",
           since);
}
