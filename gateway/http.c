/* http.c - see http.h. The usual curl multi_socket pattern: curl says
 * which sockets to watch and when to wake it; libevent does the watching
 * and calls curl_multi_socket_action. */
#include "gateway/http.h"

#include <event2/event.h>
#include <glib.h>
#include <pthread.h>
#include <stdlib.h>

#include "gateway/log.h"

struct http_xfer {
  struct http *h;
  CURL *easy;
  http_done_fn done;
  void *arg;
  struct http_xfer *prev;
  struct http_xfer *next;
};

struct http_sock {
  struct event *ev;
};

struct http {
  struct event_base *base;
  CURLM *multi;
  struct event *timer;
  struct http_xfer *xfers;
  int running;
};

static pthread_once_t http_once = PTHREAD_ONCE_INIT;

static void
http_init_once(void)
{
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    fatal("http: curl_global_init failed");
}

void
http_global_init(void)
{
  pthread_once(&http_once, http_init_once);
}

static void
http_unlink(struct http *h, struct http_xfer *x)
{
  if (x->prev)
    x->prev->next = x->next;
  else
    h->xfers = x->next;
  if (x->next)
    x->next->prev = x->prev;
  h->running--;
}

/* Hands every finished transfer to its owner. */
static void
http_check_done(struct http *h)
{
  CURLMsg *msg;
  int left;

  while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
    struct http_xfer *x = NULL;
    CURL *easy = msg->easy_handle;
    CURLcode rc = msg->data.result;
    long status = 0;

    if (msg->msg != CURLMSG_DONE)
      continue;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(h->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    if (x == NULL)
      continue;
    http_unlink(h, x);
    x->done(x->arg, easy, rc, status);
    free(x);
  }
}

static void
http_event_cb(evutil_socket_t fd, short what, void *arg)
{
  struct http *h = arg;
  int flags = 0;
  int still;

  if (what & EV_READ)
    flags |= CURL_CSELECT_IN;
  if (what & EV_WRITE)
    flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(h->multi, fd, flags, &still);
  http_check_done(h);
}

static void
http_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct http *h = arg;
  int still;

  (void)fd;
  (void)what;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &still);
  http_check_done(h);
}

static int
http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
               void *socketp)
{
  struct http *h = userp;
  struct http_sock *hs = socketp;
  short kind = EV_PERSIST;

  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (hs) {
      event_free(hs->ev);
      free(hs);
      curl_multi_assign(h->multi, s, NULL);
    }
    return 0;
  }
  if (what & CURL_POLL_IN)
    kind |= EV_READ;
  if (what & CURL_POLL_OUT)
    kind |= EV_WRITE;
  if (hs == NULL) {
    hs = xcalloc(1, sizeof(*hs));
    curl_multi_assign(h->multi, s, hs);
  } else {
    event_free(hs->ev);
  }
  hs->ev = event_new(h->base, s, kind, http_event_cb, h);
  event_add(hs->ev, NULL);
  return 0;
}

static int
http_timer_set(CURLM *multi, long ms, void *userp)
{
  struct http *h = userp;
  struct timeval tv;

  (void)multi;
  if (ms < 0) {
    evtimer_del(h->timer);
    return 0;
  }
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  evtimer_add(h->timer, &tv);
  return 0;
}

struct http *
http_new(struct event_base *base)
{
  struct http *h = xcalloc(1, sizeof(*h));

  http_global_init();
  h->base = base;
  h->multi = curl_multi_init();
  if (h->multi == NULL)
    fatal("http: curl_multi_init failed");
  h->timer = evtimer_new(base, http_timer_cb, h);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_timer_set);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  return h;
}

int
http_start(struct http *h, CURL *easy, http_done_fn done, void *arg)
{
  struct http_xfer *x = xcalloc(1, sizeof(*x));

  x->h = h;
  x->easy = easy;
  x->done = done;
  x->arg = arg;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)x);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  if (curl_multi_add_handle(h->multi, easy) != CURLM_OK) {
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    free(x);
    return -1;
  }
  x->next = h->xfers;
  if (h->xfers)
    h->xfers->prev = x;
  h->xfers = x;
  h->running++;
  return 0;
}

void
http_cancel(struct http *h, CURL *easy)
{
  struct http_xfer *x = NULL;

  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
  if (x == NULL)
    return;
  curl_multi_remove_handle(h->multi, easy);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
  http_unlink(h, x);
  free(x);
}

size_t
http_collect_body(char *p, size_t size, size_t n, void *gstring)
{
  GString *body = gstring;

  if (body == NULL)
    return size * n;
  if (body->len + size * n > HTTP_BODY_MAX)
    return 0;
  g_string_append_len(body, p, (gssize)(size * n));
  return size * n;
}

int
http_running(const struct http *h)
{
  return h->running;
}

void
http_free(struct http *h)
{
  if (h == NULL)
    return;
  while (h->xfers)
    http_cancel(h, h->xfers->easy);
  curl_multi_cleanup(h->multi);
  event_free(h->timer);
  free(h);
}
