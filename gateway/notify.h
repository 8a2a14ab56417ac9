/* notify.h - run a function on the main event loop from any thread.
 *
 * The spool writer and libmosquitto's network thread finish work off the
 * main thread; they post a callback here and the main loop runs it, so all
 * session and delivery state is touched by one thread only. */
#ifndef CAMGATE_NOTIFY_H
#define CAMGATE_NOTIFY_H

struct event_base;
struct notify;

typedef void (*notify_fn)(void *arg);

/* Requires evthread_use_pthreads() before the base was made. */
struct notify *notify_new(struct event_base *base);
/* Runs what is still queued, then frees; NULL is fine. */
void notify_free(struct notify *n);
/* Runs, on the loop thread, what is queued now. */
void notify_run_pending(struct notify *n);
/* Thread-safe. fn(arg) runs later on the loop thread, in posting order. */
void notify_post(struct notify *n, notify_fn fn, void *arg);

#endif
