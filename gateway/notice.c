/* notice.c - see notice.h. */
#include "gateway/notice.h"

#include <string.h>

#include "gateway/log.h"

#define NOTICE_MAX_ROUTES 64

struct cam_event *
notice_event(const char *kind, const char *title, const char *text)
{
  struct cam_event *ev = cam_event_new();

  ev->recv_time = now_ms();
  ev->device_time = ev->recv_time;
  ev->state = EVENT_PULSE;
  cam_event_set(&ev->source, "camgate");
  cam_event_set(&ev->camera, EVENT_CAMERA_SELF);
  cam_event_set(&ev->camera_name, "camgate");
  cam_event_set(&ev->kind, kind);
  cam_event_set(&ev->title, title);
  cam_event_set(&ev->text, text);
  return ev;
}

size_t
notice_routes(const struct config *cfg, const char *about,
              struct route *out, size_t max)
{
  size_t n = 0;

  for (size_t i = 0; i < cfg->nbackends && n < max; i++) {
    const char *b = cfg->backends[i].name;
    struct route *rt = &out[n];

    if (about && strcmp(b, about) == 0)
      continue;
    memset(rt, 0, sizeof(*rt));
    rt->backend = b;
    rt->rule = NOTICE_RULE;
    rt->tz = cfg->tz;
    config_action(cfg, NOTICE_RULE, b, "camgate", &rt->action);
    rt->action.limited = 0;
    rt->limited = 0;
    n++;
  }
  return n;
}

size_t
notice_send(struct spool *sp, const struct config *cfg, const char *about,
            const char *kind, const char *title, const char *text,
            spool_stored_fn stored, void *arg)
{
  struct route routes[NOTICE_MAX_ROUTES];
  size_t n = notice_routes(cfg, about, routes, NOTICE_MAX_ROUTES);

  if (n == 0) {
    log_warn("notice", "about=%s kind=%s msg=\"no other backend to send "
             "the notice through\"", about ? about : "-", kind);
    return 0;
  }
  log_info("notice", "about=%s kind=%s backends=%zu msg=\"notice "
           "queued for the other backends\"", about ? about : "-", kind,
           n);
  spool_submit(sp, notice_event(kind, title, text), routes, n, stored,
               arg);
  return n;
}
