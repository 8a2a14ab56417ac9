/* identity.c - see identity.h. */
#include "ingest/identity.h"

#include <stdlib.h>
#include <string.h>

#include "gateway/event.h"
#include "gateway/log.h"

#define IDENTITY_MAX 64

void
identity_sanitize(char *s)
{
  for (; *s; s++) {
    char c = *s;
    int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';

    if (!ok)
      *s = '_';
  }
}

/* Expands {camera}, {name} and {1}..{9} in tmpl. */
static char *
identity_expand(const char *tmpl, const struct camera_conf *cam,
                GMatchInfo *mi)
{
  GString *out = g_string_new(NULL);
  char *res;

  for (const char *p = tmpl; *p; p++) {
    if (*p == '{' && strncmp(p, "{camera}", 8) == 0) {
      g_string_append(out, cam->id);
      p += 7;
    } else if (*p == '{' && strncmp(p, "{name}", 6) == 0) {
      g_string_append(out, cam->name ? cam->name : cam->id);
      p += 5;
    } else if (*p == '{' && p[1] >= '1' && p[1] <= '9' && p[2] == '}') {
      char *g = g_match_info_fetch(mi, p[1] - '0');

      if (g)
        g_string_append(out, g);
      g_free(g);
      p += 2;
    } else {
      g_string_append_c(out, *p);
    }
  }
  res = xstrdup(out->str);
  g_string_free(out, TRUE);
  return res;
}

/* Whether a channel's id may stand for an alert of cam: not the id of
 * another configured camera (nor one another NVR's channels would take),
 * and not camgate's own, which its notices use. */
static int
identity_allowed(const struct config *cfg, const struct camera_conf *cam,
                 const char *id)
{
  const struct camera_conf *other;

  if (strcmp(id, EVENT_CAMERA_SELF) == 0)
    return 0;
  other = cfg ? config_camera_for(cfg, id) : NULL;
  return other == NULL || other == cam;
}

void
identity_resolve(const struct config *cfg, const struct camera_conf *cam,
                 const char *const *texts, size_t ntexts, char **id,
                 char **name)
{
  *id = NULL;
  *name = NULL;
  if (cam->channel_re) {
    for (size_t i = 0; i < ntexts && *id == NULL; i++) {
      GMatchInfo *mi = NULL;

      if (texts[i] && g_regex_match(cam->channel_re, texts[i], 0, &mi)) {
        *id = identity_expand(cam->channel_id ? cam->channel_id
                                              : "{camera}-{1}",
                              cam, mi);
        *name = identity_expand(cam->channel_name ? cam->channel_name
                                                  : "{name} {1}",
                                cam, mi);
        /* Ids that come from mail text are capped like configured ones,
         * so a camera cannot mint endless long topic names. */
        if (strlen(*id) > IDENTITY_MAX)
          (*id)[IDENTITY_MAX] = '\0';
        identity_sanitize(*id);
        if (**id != '\0' && !identity_allowed(cfg, cam, *id)) {
          char eid[IDENTITY_MAX + 8];

          log_warn("identity", "camera=%s channel_id=%s msg=\"the alert's "
                   "channel names another camera (or camgate itself), which "
                   "it may not speak for; taken as %s's own\"", cam->id,
                   log_escape(eid, sizeof(eid), *id, strlen(*id)), cam->id);
          **id = '\0';
        }
        if (**id == '\0') {
          free(*id);
          free(*name);
          *id = *name = NULL;
        }
      }
      g_match_info_free(mi);
    }
  }
  if (*id == NULL) {
    *id = xstrdup(cam->id);
    *name = xstrdup(cam->name ? cam->name : cam->id);
  }
}
