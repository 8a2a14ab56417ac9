/* notify.c - see notify.h. A mutex-guarded FIFO drained by one libevent
 * event that other threads activate. */
#include "gateway/notify.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

#include "gateway/log.h"

struct notify_item {
  notify_fn fn;
  void *arg;
  struct notify_item *next;
};

struct notify {
  struct event *ev;
  pthread_mutex_t lock;
  struct notify_item *head;
  struct notify_item *tail;
};

static struct notify_item *
notify_take_all(struct notify *n)
{
  struct notify_item *list;

  pthread_mutex_lock(&n->lock);
  list = n->head;
  n->head = n->tail = NULL;
  pthread_mutex_unlock(&n->lock);
  return list;
}

static void
notify_run(struct notify_item *list)
{
  while (list) {
    struct notify_item *next = list->next;

    list->fn(list->arg);
    free(list);
    list = next;
  }
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  notify_run(notify_take_all(arg));
}

struct notify *
notify_new(struct event_base *base)
{
  struct notify *n = xcalloc(1, sizeof(*n));

  pthread_mutex_init(&n->lock, NULL);
  n->ev = event_new(base, -1, 0, notify_cb, n);
  if (n->ev == NULL)
    fatal("notify: event_new failed");
  return n;
}

void
notify_run_pending(struct notify *n)
{
  notify_run(notify_take_all(n));
}

void
notify_free(struct notify *n)
{
  if (n == NULL)
    return;
  notify_run(notify_take_all(n));
  event_free(n->ev);
  pthread_mutex_destroy(&n->lock);
  free(n);
}

void
notify_post(struct notify *n, notify_fn fn, void *arg)
{
  struct notify_item *it = xmalloc(sizeof(*it));

  it->fn = fn;
  it->arg = arg;
  it->next = NULL;
  pthread_mutex_lock(&n->lock);
  if (n->tail)
    n->tail->next = it;
  else
    n->head = it;
  n->tail = it;
  pthread_mutex_unlock(&n->lock);
  event_active(n->ev, 0, 0);
}
