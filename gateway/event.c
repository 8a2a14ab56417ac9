/* event.c - see event.h. */
#include "gateway/event.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gateway/log.h"

struct cam_event *
cam_event_new(void)
{
  struct cam_event *ev = xcalloc(1, sizeof(*ev));

  ev->state = EVENT_PULSE;
  return ev;
}

void
cam_event_free(struct cam_event *ev)
{
  if (ev == NULL)
    return;
  free(ev->camera);
  free(ev->camera_name);
  free(ev->source);
  free(ev->kind);
  free(ev->title);
  free(ev->text);
  free(ev->rule);
  for (size_t i = 0; i < ev->natt; i++) {
    free(ev->att[i].name);
    free(ev->att[i].content_type);
    free(ev->att[i].data);
    if (ev->att[i].owns_file && ev->att[i].path)
      unlink(ev->att[i].path);
    free(ev->att[i].path);
  }
  free(ev->att);
  for (size_t i = 0; i < ev->nlabels; i++) {
    free(ev->labels[i].key);
    free(ev->labels[i].value);
  }
  free(ev->labels);
  free(ev->raw);
  free(ev);
}

void
cam_event_set(char **field, const char *value)
{
  free(*field);
  *field = value ? xstrdup(value) : NULL;
}

void
cam_event_add_attachment_owned(struct cam_event *ev, const char *name,
                           const char *content_type, unsigned char *data,
                           size_t len)
{
  struct attachment *a;

  ev->att = xrealloc(ev->att, (ev->natt + 1) * sizeof(*ev->att));
  a = &ev->att[ev->natt++];
  a->name = xstrdup(name ? name : "snapshot");
  a->content_type = xstrdup(content_type ? content_type
                                         : "application/octet-stream");
  a->data = data;
  a->len = len;
  a->path = NULL;
  a->owns_file = 0;
}

void
cam_event_add_attachment_file(struct cam_event *ev, const char *name,
                              const char *content_type, const char *path,
                              size_t len)
{
  struct attachment *a;

  cam_event_add_attachment_owned(ev, name, content_type, NULL, len);
  a = &ev->att[ev->natt - 1];
  a->path = xstrdup(path);
  a->owns_file = 1;
}

const unsigned char *
attachment_data(const struct attachment *a)
{
  struct attachment *w = (struct attachment *)a;
  unsigned char *buf;
  size_t n = 0;
  FILE *f;

  if (a->data || a->path == NULL)
    return a->data ? a->data : (const unsigned char *)"";
  f = fopen(a->path, "rbe");
  buf = xmalloc(a->len ? a->len : 1);
  if (f)
    n = fread(buf, 1, a->len, f);
  if (f == NULL || n != a->len) {
    log_error("event", "file=%s error=\"%s\" msg=\"picture file missing or "
              "short; sent without it\"", a->path,
              f ? "short read" : strerror(errno));
    if (f)
      fclose(f);
    free(buf);
    return NULL;
  }
  fclose(f);
  w->data = buf;
  return buf;
}

void
cam_event_add_attachment(struct cam_event *ev, const char *name,
                     const char *content_type, const unsigned char *data,
                     size_t len)
{
  unsigned char *copy = xmalloc(len);

  if (len)
    memcpy(copy, data, len);
  cam_event_add_attachment_owned(ev, name, content_type, copy, len);
}

void
cam_event_add_label(struct cam_event *ev, const char *key, const char *value)
{
  ev->labels = xrealloc(ev->labels, (ev->nlabels + 1) * sizeof(*ev->labels));
  ev->labels[ev->nlabels].key = xstrdup(key);
  ev->labels[ev->nlabels].value = xstrdup(value ? value : "");
  ev->nlabels++;
}

void
cam_event_set_raw(struct cam_event *ev, const void *data, size_t len)
{
  free(ev->raw);
  ev->raw = xmalloc(len ? len : 1);
  if (len)
    memcpy(ev->raw, data, len);
  ev->raw_len = len;
}

int
cam_event_set_raw_file(struct cam_event *ev, const char *path, size_t max)
{
  FILE *f = fopen(path, "rbe");
  long size;
  size_t n = 0;

  free(ev->raw);
  ev->raw = NULL;
  ev->raw_len = 0;
  if (f == NULL)
    return -1;
  if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
      (size_t)size > max || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return -1;
  }
  ev->raw = xmalloc(size ? (size_t)size : 1);
  if (size > 0)
    n = fread(ev->raw, 1, (size_t)size, f);
  fclose(f);
  if (n != (size_t)size) {
    free(ev->raw);
    ev->raw = NULL;
    return -1;
  }
  ev->raw_len = n;
  return 0;
}

const char *
cam_event_label(const struct cam_event *ev, const char *key)
{
  for (size_t i = 0; i < ev->nlabels; i++)
    if (strcmp(ev->labels[i].key, key) == 0)
      return ev->labels[i].value;
  return NULL;
}

static const char *const state_names[] = {"pulse", "start", "stop"};

const char *
event_state_name(enum event_state st)
{
  if ((unsigned)st > EVENT_STOP)
    return "pulse";
  return state_names[st];
}

int
event_state_parse(const char *name, enum event_state *out)
{
  for (int i = 0; i <= EVENT_STOP; i++) {
    if (strcmp(name, state_names[i]) == 0) {
      *out = (enum event_state)i;
      return 0;
    }
  }
  return -1;
}

const struct attachment *
cam_event_snapshot(const struct cam_event *ev)
{
  for (size_t i = 0; i < ev->natt; i++) {
    const char *ct = ev->att[i].content_type;

    if (strcmp(ct, "image/jpeg") == 0 || strcmp(ct, "image/png") == 0)
      return &ev->att[i];
  }
  return NULL;
}

int64_t
now_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_ms(void)
{
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
