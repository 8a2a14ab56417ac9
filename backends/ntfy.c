/* ntfy.c - the ntfy backend: pushes to phones, with a picture.
 *
 * Requests are libcurl easy handles run by gateway/http.c on the main
 * loop; nothing here blocks or needs a thread. A delivery is one publish,
 * perhaps tried more than once inside the delivery:
 *
 *   - with a picture, the event's snapshot fitted into the backend's box
 *     (from the shared cache in gateway/snapshot.c); a picture over
 *     max_attachment, or a 413 from the server, sends it again fitted
 *     into half the box, and then without a picture;
 *   - 2xx is done; 429 waits for the server's Retry-After (or a backoff
 *     of our own when it names none) before this backend sends anything
 *     again, and hands the delivery back to the spool for that long;
 *     5xx, timeouts and network errors are retried from the spool with
 *     the scheduler's backoff; any other answer fails the delivery with
 *     the server's reason.
 *
 * The access token or password is held only inside the Authorization
 * line, which is wiped when the backend closes, and never logged. */
#include "backends/ntfy.h"

#include <ctype.h>
#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backends/backend.h"
#include "gateway/http.h"
#include "gateway/log.h"
#include "gateway/snapshot.h"
#include "gateway/template.h"

#ifndef CAMGATE_VERSION
#define CAMGATE_VERSION "unknown"
#endif

#define NTFY_WINDOW 4               /* deliveries in flight at most */
#define NTFY_RESP_MAX 2048          /* of an answer's body, for errors */
#define NTFY_ERR_LEN 200
#define NTFY_CONNECT_TIMEOUT_MS 10000L
#define NTFY_WORD_BYTES 45          /* UTF-8 bytes per encoded word */
#define NTFY_LEVEL_HALF 1           /* picture in half the box */
#define NTFY_LEVEL_NONE 2           /* no picture */

static const struct {
  const char *name;
  int value;
} ntfy_priorities[] = {
  {"min", 1}, {"low", 2}, {"default", 3}, {"high", 4}, {"urgent", 5},
  {"max", 5}, {"1", 1}, {"2", 2}, {"3", 3}, {"4", 4}, {"5", 5},
};

/* Emoji short codes ntfy shows in front of the title. */
static const struct {
  const char *kind;
  const char *tag;
} ntfy_tags_by_kind[] = {
  {"motion", "walking"},
  {"person", "bust_in_silhouette"},
  {"face", "bust_in_silhouette"},
  {"vehicle", "car"},
  {"animal", "dog"},
  {"doorbell", "bell"},
  {"line_crossing", "construction"},
  {"intrusion", "rotating_light"},
  {"tamper", "warning"},
  {"video_loss", "no_entry_sign"},
  {"sound", "loud_sound"},
  {"audio", "loud_sound"},
  {"alert", "warning"},
};

/* ---- the pure parts (ntfy.h) ---- */

int
ntfy_priority_parse(const char *s)
{
  for (size_t i = 0; s && i < sizeof(ntfy_priorities) /
                                  sizeof(ntfy_priorities[0]); i++)
    if (strcasecmp(s, ntfy_priorities[i].name) == 0)
      return ntfy_priorities[i].value;
  return 0;
}

const char *
ntfy_kind_tag(const char *kind)
{
  for (size_t i = 0; kind && i < sizeof(ntfy_tags_by_kind) /
                                     sizeof(ntfy_tags_by_kind[0]); i++)
    if (strcmp(kind, ntfy_tags_by_kind[i].kind) == 0)
      return ntfy_tags_by_kind[i].tag;
  return "warning";
}

/* Returns the length of the UTF-8 character at s (n bytes left), or 0
 * when it is not one: overlong forms, surrogates and values past
 * U+10FFFF are not. */
static size_t
ntfy_utf8_len(const unsigned char *s, size_t n)
{
  size_t len;
  uint32_t cp;

  if (s[0] < 0x80)
    return 1;
  if (s[0] >= 0xC2 && s[0] <= 0xDF)
    len = 2, cp = s[0] & 0x1F;
  else if (s[0] >= 0xE0 && s[0] <= 0xEF)
    len = 3, cp = s[0] & 0x0F;
  else if (s[0] >= 0xF0 && s[0] <= 0xF4)
    len = 4, cp = s[0] & 0x07;
  else
    return 0;
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    cp = cp << 6 | (s[i] & 0x3F);
  }
  if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
    return 0;
  return len;
}

/* Returns a copy of s, at most max bytes cut at a character boundary,
 * with every byte that is not UTF-8 replaced by '?'. */
static char *
ntfy_utf8_clean(const char *s, size_t max)
{
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t n = strlen((const char *)p);
  char *out = xmalloc((n < max ? n : max) + 1);
  size_t o = 0;

  for (size_t i = 0; i < n;) {
    size_t len = ntfy_utf8_len(p + i, n - i);

    if (o + (len ? len : 1) > max)
      break;
    if (len == 0) {
      out[o++] = '?';
      i++;
      continue;
    }
    memcpy(out + o, p + i, len);
    o += len;
    i += len;
  }
  out[o] = '\0';
  return out;
}

static int
ntfy_plain_ascii(const char *s)
{
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p < 0x20 || *p >= 0x7F)
      return 0;
  /* An encoded word's opening would be decoded by the server. */
  return strstr(s, "=?") == NULL;
}

char *
ntfy_header_value(const char *s)
{
  char *clean;
  GString *out;
  size_t n;
  char *r;

  if (s == NULL)
    return xstrdup("");
  if (ntfy_plain_ascii(s))
    return xstrdup(s);
  clean = ntfy_utf8_clean(s, strlen(s));
  n = strlen(clean);
  out = g_string_new(NULL);
  for (size_t i = 0; i < n;) {
    unsigned char b64[4 * ((NTFY_WORD_BYTES + 2) / 3) + 1];
    size_t take = 0;

    /* Whole characters only: a word must decode on its own. */
    while (i + take < n) {
      size_t len = ntfy_utf8_len((const unsigned char *)clean + i + take,
                                 n - i - take);

      if (len == 0)
        len = 1;
      if (take + len > NTFY_WORD_BYTES)
        break;
      take += len;
    }
    EVP_EncodeBlock(b64, (const unsigned char *)clean + i, (int)take);
    g_string_append_printf(out, "%s=?UTF-8?B?%s?=", i ? " " : "", b64);
    i += take;
  }
  r = xstrdup(out->str);
  g_string_free(out, TRUE);
  free(clean);
  return r;
}

char *
ntfy_url_clean(const char *s)
{
  static const char hex[] = "0123456789ABCDEF";
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  char *out = xmalloc(strlen((const char *)p) * 3 + 1);
  size_t o = 0;

  for (; *p; p++) {
    if (*p <= 0x20 || *p >= 0x7F || strchr("\"<>\\^`{|}", *p)) {
      out[o++] = '%';
      out[o++] = hex[*p >> 4];
      out[o++] = hex[*p & 0x0F];
    } else {
      out[o++] = (char)*p;
    }
  }
  out[o] = '\0';
  return out;
}

/* Cuts s to at most max bytes at a character boundary (s is UTF-8). */
static void
ntfy_cut(char *s, size_t max)
{
  size_t n = strlen(s);

  if (n <= max)
    return;
  while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
    max--;
  s[max] = '\0';
}

/* Returns s without leading and trailing white space, in place. */
static char *
ntfy_trim(char *s)
{
  size_t n = strlen(s);
  char *p = s;

  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
  while (isspace((unsigned char)*p))
    p++;
  memmove(s, p, strlen(p) + 1);
  return s;
}

static int
ntfy_empty(const char *s)
{
  if (s == NULL)
    return 1;
  while (isspace((unsigned char)*s))
    s++;
  return *s == '\0';
}

static char *
ntfy_text(const char *tmpl, const struct cam_event *ev, GTimeZone *tz,
          size_t max)
{
  char *raw = template_expand(tmpl, ev, tz);
  char *s = ntfy_utf8_clean(ntfy_trim(raw), max);

  free(raw);
  return s;
}

static char *
ntfy_message(const struct ntfy_conf *nc, const struct action *act,
             const struct cam_event *ev, GTimeZone *tz)
{
  const char *tmpl = act && act->message ? act->message : nc->message;
  char folded[160];
  char *msg = NULL;
  char *s;

  if (tmpl)
    msg = ntfy_text(tmpl, ev, tz, NTFY_MESSAGE_MAX);
  if (msg == NULL || msg[0] == '\0') {
    free(msg);
    tmpl = !ntfy_empty(ev->text) ? "{text}"
           : !ntfy_empty(ev->title) ? "{title}" : "{kind} at {datetime}";
    msg = ntfy_text(tmpl, ev, tz, NTFY_MESSAGE_MAX);
  }
  template_folded(ev, tz, folded, sizeof(folded));
  if (folded[0] == '\0')
    return msg;
  /* The count of what was held back must survive the cut. */
  ntfy_cut(msg, NTFY_MESSAGE_MAX - strlen(folded) - 2);
  s = xasprintf("%s\n\n%s", msg, folded);
  free(msg);
  return s;
}

static char *
ntfy_tags_join(const struct ntfy_conf *nc, const struct cam_event *ev,
               GTimeZone *tz)
{
  GString *out;
  char *r;

  if (nc->ntags == 0)
    return xstrdup(ntfy_kind_tag(ev->kind));
  out = g_string_new(NULL);
  for (size_t i = 0; i < nc->ntags; i++) {
    char *t = ntfy_text(nc->tags[i], ev, tz, NTFY_TAGS_MAX);

    /* A comma would split one tag into two. */
    for (char *p = t; *p; p++)
      if (*p == ',')
        *p = ' ';
    if (t[0] && out->len + strlen(t) + 1 <= NTFY_TAGS_MAX)
      g_string_append_printf(out, "%s%s", out->len ? "," : "", t);
    free(t);
  }
  r = out->len ? xstrdup(out->str) : NULL;
  g_string_free(out, TRUE);
  return r;
}

static char *
ntfy_url(const char *tmpl, const struct cam_event *ev, GTimeZone *tz)
{
  char *raw;
  char *url;

  if (tmpl == NULL)
    return NULL;
  raw = template_expand(tmpl, ev, tz);
  url = ntfy_url_clean(ntfy_trim(raw));
  free(raw);
  if (url[0] == '\0') {
    free(url);
    return NULL;
  }
  return url;
}

static void
ntfy_json_text(json_t *obj, const char *key, const char *text)
{
  char *clean = ntfy_utf8_clean(text, NTFY_MESSAGE_MAX);
  json_t *v = json_string(clean);

  free(clean);
  json_object_set_new(obj, key, v ? v : json_string(""));
}

static char *
ntfy_actions(const struct ntfy_conf *nc, const struct cam_event *ev,
             GTimeZone *tz)
{
  json_t *arr;
  char *s;

  if (nc->nactions == 0)
    return NULL;
  arr = json_array();
  for (size_t i = 0; i < nc->nactions; i++) {
    const struct ntfy_action_conf *a = &nc->actions[i];
    char *label = ntfy_text(a->label, ev, tz, NTFY_TITLE_MAX);
    char *url = ntfy_url(a->url, ev, tz);
    json_t *o = json_object();

    json_object_set_new(o, "action", json_string(
                        a->type == NTFY_ACTION_HTTP ? "http" : "view"));
    ntfy_json_text(o, "label", label);
    ntfy_json_text(o, "url", url ? url : "");
    if (a->type == NTFY_ACTION_HTTP) {
      ntfy_json_text(o, "method", a->method ? a->method : "POST");
      if (a->body) {
        char *body = ntfy_text(a->body, ev, tz, NTFY_MESSAGE_MAX);

        ntfy_json_text(o, "body", body);
        free(body);
      }
    }
    json_object_set_new(o, "clear", json_boolean(a->clear));
    json_array_append_new(arr, o);
    free(label);
    free(url);
  }
  /* \u escapes keep the header plain ASCII. */
  s = json_dumps(arr, JSON_COMPACT | JSON_ENSURE_ASCII);
  json_decref(arr);
  if (s == NULL)
    fatal("ntfy: out of memory writing JSON");
  return s;
}

void
ntfy_msg_build(struct ntfy_msg *m, const struct ntfy_conf *nc,
               const struct action *act, const struct cam_event *ev,
               GTimeZone *tz)
{
  const char *tmpl = act && act->title ? act->title : nc->title;
  int prio = 0;

  memset(m, 0, sizeof(*m));
  m->title = ntfy_text(tmpl ? tmpl : "{camera_name}: {kind}", ev, tz,
                       NTFY_TITLE_MAX);
  m->message = ntfy_message(nc, act, ev, tz);
  if (act && act->priority)
    prio = ntfy_priority_parse(act->priority);
  m->priority = prio ? prio : nc->priority ? nc->priority : 3;
  m->tags = ntfy_tags_join(nc, ev, tz);
  m->click = ntfy_url(nc->click, ev, tz);
  m->icon = ntfy_url(nc->icon, ev, tz);
  m->actions = ntfy_actions(nc, ev, tz);
}

void
ntfy_msg_clear(struct ntfy_msg *m)
{
  free(m->title);
  free(m->message);
  free(m->tags);
  free(m->click);
  free(m->icon);
  free(m->actions);
  memset(m, 0, sizeof(*m));
}

char *
ntfy_filename(const struct cam_event *ev, const char *content_type)
{
  const char *cam = ev->camera && ev->camera[0] ? ev->camera : "camera";
  int64_t ms = ev->device_time > 0 ? ev->device_time : ev->recv_time;
  time_t sec = (time_t)(ms / 1000);
  char when[32] = "snapshot";
  char slug[65];
  size_t n = 0;
  struct tm tm;

  for (const char *p = cam; *p && n < sizeof(slug) - 1; p++)
    slug[n++] = isalnum((unsigned char)*p) || *p == '-' || *p == '_'
                  ? *p : '_';
  slug[n] = '\0';
  if (ms > 0 && gmtime_r(&sec, &tm))
    strftime(when, sizeof(when), "%Y%m%d-%H%M%S", &tm);
  return xasprintf("%s-%s.%s", slug, when,
                     content_type && strcmp(content_type, "image/png") == 0
                       ? "png" : "jpg");
}

char *
ntfy_auth_header(const struct ntfy_conf *nc)
{
  unsigned char *b64;
  char *pair;
  char *line;
  size_t n;

  if (nc->token)
    return xasprintf("Authorization: Bearer %s", nc->token);
  if (nc->user == NULL || nc->password == NULL)
    return NULL;
  pair = xasprintf("%s:%s", nc->user, nc->password);
  n = strlen(pair);
  b64 = xmalloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock(b64, (const unsigned char *)pair, (int)n);
  line = xasprintf("Authorization: Basic %s", b64);
  explicit_bzero(b64, strlen((char *)b64));
  explicit_bzero(pair, n);
  free(b64);
  free(pair);
  return line;
}

static void
ntfy_header_add(char **h, size_t *n, const char *name, const char *value)
{
  char *v;

  if (value == NULL || value[0] == '\0')
    return;
  v = ntfy_header_value(value);
  h[(*n)++] = xasprintf("%s: %s", name, v);
  free(v);
}

char **
ntfy_headers(const struct ntfy_msg *m, const char *filename,
             const char *content_type, size_t *n)
{
  char **h = xcalloc(12, sizeof(*h));

  *n = 0;
  ntfy_header_add(h, n, "Title", m->title);
  if (filename) {
    ntfy_header_add(h, n, "Message", m->message);
    ntfy_header_add(h, n, "Filename", filename);
  }
  h[(*n)++] = xasprintf("X-Priority: %d", m->priority);
  ntfy_header_add(h, n, "Tags", m->tags);
  ntfy_header_add(h, n, "Click", m->click);
  ntfy_header_add(h, n, "Icon", m->icon);
  ntfy_header_add(h, n, "Actions", m->actions);
  if (filename)
    h[(*n)++] = xasprintf("Content-Type: %s", content_type
                                                  ? content_type
                                                  : "image/jpeg");
  else
    h[(*n)++] = xstrdup("Content-Type: text/plain; charset=utf-8");
  h[*n] = NULL;
  return h;
}

void
ntfy_headers_free(char **h)
{
  for (size_t i = 0; h && h[i]; i++)
    free(h[i]);
  free(h);
}

static void
ntfy_printable(const char *s, size_t len, char *out, size_t outsz)
{
  size_t o = 0;

  for (size_t i = 0; i < len && s[i] != '\n' && s[i] != '\r' &&
                     o + 1 < outsz; i++) {
    unsigned char c = (unsigned char)s[i];

    out[o++] = c < 0x20 || c >= 0x7F ? '?'
               : c == '"' ? '\'' : c == '\\' ? '/' : (char)c;
  }
  out[o] = '\0';
}

void
ntfy_server_reason(const char *body, size_t len, char *out, size_t outsz)
{
  json_t *j;
  const char *e;

  if (outsz == 0)
    return;
  out[0] = '\0';
  if (body == NULL || len == 0)
    return;
  j = json_loadb(body, len, 0, NULL);
  e = json_string_value(json_object_get(j, "error"));
  if (e)
    ntfy_printable(e, strlen(e), out, outsz);
  else
    ntfy_printable(body, len, out, outsz);
  json_decref(j);
}

/* ---- the backend ---- */

struct ntfy;

struct ntfy_dlv {
  struct ntfy *n;
  const struct cam_event *ev;
  CURL *easy;
  struct curl_slist *hdrs;
  struct event *timer;        /* an answer given inside deliver() */
  struct ntfy_msg msg;
  struct snapshot *snap;      /* the picture of this try, or NULL */
  char *filename;
  int level;                  /* 0, NTFY_LEVEL_HALF or NTFY_LEVEL_NONE */
  int box_w;                  /* the box; 0 x 0: as the camera sent it */
  int box_h;
  int64_t started;            /* mono ms */
  char resp[NTFY_RESP_MAX];
  size_t resp_len;
  enum deliver_status st;     /* the answer the timer gives */
  char error[NTFY_ERR_LEN];
  deliver_done_fn done;
  void *ctx;
  struct ntfy_dlv *next;
};

struct ntfy {
  const char *name;
  const struct backend_conf *bc;
  const struct ntfy_conf *nc;
  const struct config *cfg;
  struct event_base *base;
  struct http *http;
  char *url;                  /* <server>/<topic> */
  char *auth;                 /* the Authorization line (secret) */
  int64_t hold_until;         /* mono ms: nothing is sent before */
  int throttled;              /* 429s in a row */
  int closed;
  struct ntfy_dlv *dlvs;
  size_t ndlvs;
};

static void ntfy_send(struct ntfy_dlv *d);

static void
ntfy_dlv_unlink(struct ntfy *n, struct ntfy_dlv *d)
{
  struct ntfy_dlv **pp = &n->dlvs;

  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = d->next;
    n->ndlvs--;
  }
}

/* Frees the request's header list; one line holds the secret. */
static void
ntfy_hdrs_free(struct curl_slist *l)
{
  for (struct curl_slist *p = l; p; p = p->next)
    explicit_bzero(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

static void
ntfy_request_free(struct ntfy_dlv *d)
{
  if (d->easy) {
    http_cancel(d->n->http, d->easy);
    curl_easy_cleanup(d->easy);
    d->easy = NULL;
  }
  ntfy_hdrs_free(d->hdrs);
  d->hdrs = NULL;
}

/* Frees d, then gives its answer: done() may start the next delivery. */
static void
ntfy_finish(struct ntfy_dlv *d, enum deliver_status st, int64_t delay_ms,
            const char *error)
{
  deliver_done_fn done = d->done;
  void *ctx = d->ctx;
  char err[NTFY_ERR_LEN];

  snprintf(err, sizeof(err), "%s", error ? error : "");
  ntfy_dlv_unlink(d->n, d);
  ntfy_request_free(d);
  event_free(d->timer);
  snapshot_unref(d->snap);
  ntfy_msg_clear(&d->msg);
  free(d->filename);
  free(d);
  /* A later try (429) starts over at phase 0, the only phase. */
  done(ctx, st, 0, delay_ms, err[0] ? err : NULL);
}

static void
ntfy_dlv_timer(evutil_socket_t fd, short what, void *arg)
{
  struct ntfy_dlv *d = arg;

  (void)fd;
  (void)what;
  ntfy_finish(d, d->st, 0, d->error);
}

/* Answers on a later turn of the loop: for answers known inside
 * deliver(), which must not call done() itself. */
static void
ntfy_answer_later(struct ntfy_dlv *d, enum deliver_status st,
                  const char *error)
{
  struct timeval now = {0, 0};

  d->st = st;
  snprintf(d->error, sizeof(d->error), "%s", error ? error : "");
  evtimer_add(d->timer, &now);
}

static size_t
ntfy_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
  struct ntfy_dlv *d = arg;
  size_t n = size * nmemb;
  size_t room = sizeof(d->resp) - 1 - d->resp_len;
  size_t take = n < room ? n : room;

  memcpy(d->resp + d->resp_len, ptr, take);
  d->resp_len += take;
  d->resp[d->resp_len] = '\0';
  return n;
}

/* The box of this delivery (0 x 0: the picture as sent): the merged
 * action's, whose backend defaults hold the backend's own snapshot key;
 * that key alone for an event that no rule sent here. Returns 0 when no
 * picture is wanted. */
static int
ntfy_box(const struct ntfy_conf *nc, const struct action *act, int *w,
         int *h)
{
  if (act) {
    *w = act->snapshot_w;
    *h = act->snapshot_h;
    return act->snapshot;
  }
  if (nc->snapshot_w < 0)
    return 0;
  *w = nc->snapshot_w;
  *h = nc->snapshot_h;
  return 1;
}

/* Picks the picture for d->level, stepping down past pictures over
 * max_attachment (and past halving a PNG, which is never resized). */
static void
ntfy_pick_picture(struct ntfy_dlv *d)
{
  const struct ntfy_conf *nc = d->n->nc;

  snapshot_unref(d->snap);
  d->snap = NULL;
  while (d->level < NTFY_LEVEL_NONE) {
    int w = d->box_w, h = d->box_h;

    /* Half of what the first try sent, which may be smaller than the
     * box: a picture is never enlarged to fit one. */
    if (d->level == NTFY_LEVEL_HALF) {
      struct snapshot *first = snapshot_get(d->ev, w, h, nc->quality);

      if (first == NULL ||
          strcmp(first->content_type, "image/jpeg") != 0 ||
          first->width < 2 || first->height < 2) {
        snapshot_unref(first);
        d->level = NTFY_LEVEL_NONE;
        break;
      }
      w = first->width / 2;
      h = first->height / 2;
      snapshot_unref(first);
    }
    d->snap = snapshot_get(d->ev, w, h, nc->quality);
    if (d->snap == NULL) {
      d->level = NTFY_LEVEL_NONE;
      break;
    }
    if (d->snap->len <= nc->max_attachment)
      return;
    log_info("ntfy", "backend=%s event=%" PRId64 " bytes=%zu max=%zu "
             "msg=\"picture over max_attachment; trying a smaller one\"",
             d->n->name, d->ev->id, d->snap->len, nc->max_attachment);
    snapshot_unref(d->snap);
    d->snap = NULL;
    d->level++;
  }
}

static struct curl_slist *
ntfy_slist(struct ntfy_dlv *d)
{
  struct curl_slist *l = NULL;
  const char *ct = d->snap ? d->snap->content_type : NULL;
  size_t n;
  char **h;

  free(d->filename);
  d->filename = d->snap ? ntfy_filename(d->ev, ct) : NULL;
  h = ntfy_headers(&d->msg, d->filename, ct, &n);
  for (size_t i = 0; i < n; i++)
    l = curl_slist_append(l, h[i]);
  ntfy_headers_free(h);
  /* No 100-continue round trip: the body is small and servers differ. */
  l = curl_slist_append(l, "Expect:");
  if (d->n->auth)
    l = curl_slist_append(l, d->n->auth);
  if (l == NULL)
    fatal("ntfy: out of memory building headers");
  return l;
}

static void ntfy_done_cb(void *arg, CURL *easy, CURLcode rc, long status);

static int
ntfy_easy_setup(struct ntfy_dlv *d)
{
  const struct ntfy *n = d->n;
  CURL *e = curl_easy_init();

  if (e == NULL)
    return -1;
  d->easy = e;
  d->hdrs = ntfy_slist(d);
  curl_easy_setopt(e, CURLOPT_URL, n->url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, d->hdrs);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "camgate/" CAMGATE_VERSION);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)n->nc->timeout * 1000L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, NTFY_CONNECT_TIMEOUT_MS);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ntfy_write_cb);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, d);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  if (n->nc->ca_file)
    curl_easy_setopt(e, CURLOPT_CAINFO, n->nc->ca_file);
  if (d->snap) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)d->snap->len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->snap->data);
  } else {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)strlen(d->msg.message));
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, d->msg.message);
  }
  return 0;
}

/* Starts the request for the current level. Not inside deliver() unless
 * it answers through the timer. */
static void
ntfy_send(struct ntfy_dlv *d)
{
  ntfy_request_free(d);
  d->resp_len = 0;
  d->resp[0] = '\0';
  d->started = mono_ms();
  if (ntfy_easy_setup(d) < 0 ||
      http_start(d->n->http, d->easy, ntfy_done_cb, d) < 0) {
    log_warn("ntfy", "backend=%s event=%" PRId64 " msg=\"cannot start "
             "the request\"", d->n->name, d->ev->id);
    ntfy_request_free(d);
    ntfy_answer_later(d, DELIVER_RETRY, "cannot start the request");
  }
}

static void
ntfy_log_done(struct ntfy_dlv *d, long status)
{
  if (d->snap)
    log_info("ntfy", "backend=%s event=%" PRId64 " camera=%s status=%ld "
             "picture=%dx%d bytes=%zu ms=%" PRId64 " msg=\"published\"",
             d->n->name, d->ev->id, d->ev->camera, status, d->snap->width,
             d->snap->height, d->snap->len, mono_ms() - d->started);
  else
    log_info("ntfy", "backend=%s event=%" PRId64 " camera=%s status=%ld "
             "picture=none ms=%" PRId64 " msg=\"published\"", d->n->name,
             d->ev->id, d->ev->camera, status, mono_ms() - d->started);
}

/* 429: nothing goes to this server until it says so (at most retry_max);
 * the delivery goes back to the spool until then. */
static void
ntfy_throttled(struct ntfy_dlv *d, const char *reason)
{
  struct ntfy *n = d->n;
  curl_off_t after = -1;
  int64_t wait_ms;
  char err[NTFY_ERR_LEN];

  curl_easy_getinfo(d->easy, CURLINFO_RETRY_AFTER, &after);
  n->throttled++;
  if (after > 0) {
    /* The server's word, but never past retry_max: a Retry-After of a
     * year would silence the phone until a restart. */
    wait_ms = after < n->bc->retry_max ? (int64_t)after * 1000
                                       : n->bc->retry_max * 1000LL;
  } else {
    wait_ms = (int64_t)n->bc->retry_initial * 1000;
    for (int i = 1; i < n->throttled && wait_ms < n->bc->retry_max * 1000LL;
         i++)
      wait_ms *= 2;
    if (wait_ms > n->bc->retry_max * 1000LL)
      wait_ms = n->bc->retry_max * 1000LL;
  }
  n->hold_until = mono_ms() + wait_ms;
  log_warn("ntfy", "backend=%s event=%" PRId64 " status=429 "
           "retry_after=%s wait_ms=%" PRId64 " reason=\"%s\" "
           "msg=\"rate limited by the server; waiting\"", n->name,
           d->ev->id, after > 0 ? "given" : "none", wait_ms, reason);
  snprintf(err, sizeof(err), "HTTP 429: %s",
           reason[0] ? reason : "too many requests");
  ntfy_finish(d, DELIVER_LATER, wait_ms, err);
}

/* 413: the same message with a smaller picture, or none. */
static int
ntfy_too_large(struct ntfy_dlv *d, const char *reason)
{
  if (d->snap == NULL)
    return -1;
  log_info("ntfy", "backend=%s event=%" PRId64 " status=413 bytes=%zu "
           "reason=\"%s\" msg=\"attachment refused; sending a smaller "
           "one\"", d->n->name, d->ev->id, d->snap->len, reason);
  d->level++;
  ntfy_pick_picture(d);
  ntfy_send(d);
  return 0;
}

static void
ntfy_done_cb(void *arg, CURL *easy, CURLcode rc, long status)
{
  struct ntfy_dlv *d = arg;
  char reason[NTFY_ERR_LEN - 16];
  char err[NTFY_ERR_LEN];

  (void)easy;
  if (rc != CURLE_OK) {
    log_warn("ntfy", "backend=%s event=%" PRId64 " url=%s error=\"%s\" "
             "msg=\"request failed; retrying later\"", d->n->name,
             d->ev->id, d->n->url, curl_easy_strerror(rc));
    ntfy_finish(d, DELIVER_RETRY, 0, curl_easy_strerror(rc));
    return;
  }
  ntfy_server_reason(d->resp, d->resp_len, reason, sizeof(reason));
  if (status >= 200 && status < 300) {
    d->n->throttled = 0;
    ntfy_log_done(d, status);
    ntfy_finish(d, DELIVER_DONE, 0, NULL);
    return;
  }
  if (status == 413 && ntfy_too_large(d, reason) == 0)
    return;
  if (status == 429) {
    ntfy_throttled(d, reason);
    return;
  }
  snprintf(err, sizeof(err), "HTTP %ld%s%s", status, reason[0] ? ": " : "",
           reason);
  log_warn("ntfy", "backend=%s event=%" PRId64 " status=%ld reason=\"%s\" "
           "msg=\"%s\"", d->n->name, d->ev->id, status, reason,
           status >= 500 ? "server error; retrying later"
                         : "refused; giving up on this event");
  ntfy_finish(d, status >= 500 ? DELIVER_RETRY : DELIVER_FAILED, 0, err);
}

static void
ntfy_deliver(void *b, const struct cam_event *ev, int phase,
             deliver_done_fn done, void *ctx)
{
  struct ntfy *n = b;
  struct ntfy_dlv *d = xcalloc(1, sizeof(*d));
  struct action act;
  int has_act;

  d->n = n;
  d->ev = ev;
  d->done = done;
  d->ctx = ctx;
  d->timer = evtimer_new(n->base, ntfy_dlv_timer, d);
  if (d->timer == NULL)
    fatal("ntfy: evtimer_new failed");
  d->next = n->dlvs;
  n->dlvs = d;
  n->ndlvs++;
  if (n->closed || phase != 0) {
    ntfy_answer_later(d, n->closed ? DELIVER_RETRY : DELIVER_FAILED,
                      n->closed ? "backend closing"
                                : "unknown delivery phase");
    return;
  }
  has_act = ev->rule != NULL;
  if (has_act)
    config_action(n->cfg, ev->rule, n->name, ev->camera, &act);
  ntfy_msg_build(&d->msg, n->nc, has_act ? &act : NULL, ev, n->cfg->tz);
  d->level = NTFY_LEVEL_NONE;
  if (ntfy_box(n->nc, has_act ? &act : NULL, &d->box_w, &d->box_h)) {
    d->level = 0;
    ntfy_pick_picture(d);
  }
  ntfy_send(d);
}

static int
ntfy_capacity(void *b)
{
  struct ntfy *n = b;

  if (n->closed || mono_ms() < n->hold_until || n->ndlvs >= NTFY_WINDOW)
    return 0;
  return NTFY_WINDOW - (int)n->ndlvs;
}

static int
ntfy_idle(void *b)
{
  struct ntfy *n = b;

  return n->dlvs == NULL;
}

static void
ntfy_free(struct ntfy *n)
{
  if (n->auth) {
    explicit_bzero(n->auth, strlen(n->auth));
    free(n->auth);
  }
  http_free(n->http);
  free(n->url);
  free(n);
}

static void
ntfy_close(void *b)
{
  struct ntfy *n = b;

  n->closed = 1;
  while (n->dlvs) {
    struct ntfy_dlv *d = n->dlvs;

    if (evtimer_pending(d->timer, NULL))
      ntfy_finish(d, d->st, 0, d->error);
    else
      ntfy_finish(d, DELIVER_RETRY, 0, "backend closing");
  }
  log_info("ntfy", "backend=%s msg=\"closed\"", n->name);
  ntfy_free(n);
}

static void *
ntfy_open(const struct backend_conf *bc, const struct config *cfg,
          struct event_base *base, struct notify *notify, char *err,
          size_t errsz)
{
  const struct ntfy_conf *nc = &bc->u.ntfy;
  struct ntfy *n;
  size_t len;

  (void)notify;
  if (nc->url == NULL || nc->topic == NULL) {
    snprintf(err, errsz, "ntfy: no url or topic");
    return NULL;
  }
  n = xcalloc(1, sizeof(*n));
  n->name = bc->name ? bc->name : "ntfy";
  n->bc = bc;
  n->nc = nc;
  n->cfg = cfg;
  n->base = base;
  n->http = http_new(base);
  len = strlen(nc->url);
  while (len > 0 && nc->url[len - 1] == '/')
    len--;
  n->url = xasprintf("%.*s/%s", (int)len, nc->url, nc->topic);
  n->auth = ntfy_auth_header(nc);
  log_info("ntfy", "backend=%s url=%s auth=%s msg=\"ready\"", n->name,
           n->url, nc->token ? "token" : n->auth ? "password" : "none");
  return n;
}

/* Rules and the time zone are read at each delivery: from the new config
 * after a reload that kept this backend. */
static void
ntfy_reconfigure(void *b, const struct backend_conf *bc,
                 const struct config *cfg)
{
  struct ntfy *n = b;

  n->name = bc->name ? bc->name : "ntfy";
  n->bc = bc;
  n->nc = &bc->u.ntfy;
  n->cfg = cfg;
}

const struct backend_ops ntfy_backend_ops = {
  .type = "ntfy",
  .open = ntfy_open,
  .capacity = ntfy_capacity,
  .deliver = ntfy_deliver,
  .idle = ntfy_idle,
  .close = ntfy_close,
  .reconfigure = ntfy_reconfigure,
};
