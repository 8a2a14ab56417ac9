/* delivery.c - see delivery.h. */
#include "gateway/delivery.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notice.h"
#include "gateway/spool.h"

#define DELIVERY_BATCH 64
#define DELIVERY_TICK_MS 500
#define DELIVERY_POLL_MS 50

struct bk;

struct inflight {
  struct bk *bk;
  struct delivery d;
  struct cam_event *ev;
  int answered;
  struct inflight *next;
};

struct bk {
  struct delivery_sched *ds;
  char *name;
  struct config *cfg;         /* the config bc points into */
  struct config *open_cfg;    /* the config state was opened with */
  const struct backend_conf *bc;
  const struct backend_ops *ops;
  void *state;                /* NULL when it could not open or closed */
  struct inflight *inflight;  /* until the spool has the outcome */
  size_t ninflight;
  int64_t hold_until;         /* backend-wide backoff, mono ms */
  struct event *timer;
  struct bk *next;
};

struct delivery_sched {
  struct event_base *base;
  struct spool *spool;
  struct notify *notify;
  struct config *cfg;
  struct bk *bks;             /* current backends */
  struct bk *retired;         /* replaced on reload, freed at the end */
  int closed;
};

static void bk_dispatch(struct bk *bk);

static void
bk_arm(struct bk *bk, int64_t ms)
{
  struct timeval tv;

  if (ms < 0)
    ms = 0;
  if (ms > DELIVERY_TICK_MS)
    ms = DELIVERY_TICK_MS;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  evtimer_add(bk->timer, &tv);
}

/* Dispatches on the loop's next turn: the outcomes and events of one
 * spool batch arrive together and cost one look at the spool, not one
 * each. */
static void
bk_soon(struct bk *bk)
{
  bk_arm(bk, 0);
}

static void
bk_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  bk_dispatch(arg);
}

static void
bk_unlink(struct bk *bk, struct inflight *f)
{
  struct inflight **pp = &bk->inflight;

  while (*pp && *pp != f)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = f->next;
    bk->ninflight--;
  }
}

/* The spool has the outcome: the delivery may be picked again. */
static void
delivery_written(void *arg, int ok)
{
  struct inflight *f = arg;
  struct bk *bk = f->bk;

  if (!ok)
    log_error("delivery", "delivery=%" PRId64 " backend=%s msg=\"could "
              "not record the outcome; it may be delivered twice\"",
              f->d.id, bk->name);
  bk_unlink(bk, f);
  free(f);
  if (bk->state && !bk->ds->closed)
    bk_soon(bk);
}

static int64_t
delivery_backoff(const struct backend_conf *bc, int attempts)
{
  int64_t ms = (int64_t)bc->retry_initial * 1000;
  int64_t cap = (int64_t)bc->retry_max * 1000;

  for (int i = 1; i < attempts && ms < cap; i++)
    ms *= 2;
  return ms < cap ? ms : cap;
}

static void
delivery_done(void *ctx, enum deliver_status st, int next_phase,
              int64_t delay_ms, const char *error)
{
  struct inflight *f = ctx;
  struct bk *bk = f->bk;
  const struct backend_conf *bc = bk->bc;
  enum delivery_state ds = DELIVERY_PENDING;
  int attempts = f->d.attempts;
  int phase = f->d.phase;
  int64_t next = 0;
  int64_t wait = 0;
  char then[64];

  if (f->answered)
    fatal("delivery: backend %s answered delivery %" PRId64 " twice",
          bk->name, f->d.id);
  f->answered = 1;
  switch (st) {
  case DELIVER_DONE:
    ds = DELIVERY_DONE;
    break;
  case DELIVER_LATER:
    phase = next_phase;
    attempts = 0;
    wait = delay_ms;
    break;
  case DELIVER_RETRY:
    attempts++;
    if (bc->max_attempts > 0 && attempts >= bc->max_attempts) {
      ds = DELIVERY_FAILED;
      break;
    }
    wait = delivery_backoff(bc, attempts);
    bk->hold_until = mono_ms() + wait;
    break;
  case DELIVER_FAILED:
    ds = DELIVERY_FAILED;
    break;
  }
  next = now_ms() + wait;
  /* What comes next, named so that a step done (MQTT's ON now, its OFF
   * after hold) does not read like a failure retried. */
  if (ds != DELIVERY_PENDING)
    snprintf(then, sizeof(then), "%s", "");
  else if (st == DELIVER_LATER && phase != f->d.phase)
    snprintf(then, sizeof(then), " next_phase=%d next_in_ms=%" PRId64,
             phase, wait);
  else
    snprintf(then, sizeof(then), " %s=%" PRId64,
             st == DELIVER_LATER ? "wait_ms" : "retry_in_ms", wait);
  log_info("delivery", "delivery=%" PRId64 " event=%" PRId64 " backend=%s "
           "camera=%s phase=%d result=%s attempts=%d%s%s%s%s", f->d.id,
           f->d.event_id, bk->name, f->ev->camera, f->d.phase,
           ds == DELIVERY_DONE ? "done"
           : ds == DELIVERY_FAILED ? "failed"
           : st == DELIVER_RETRY ? "retry"
           : phase != f->d.phase ? "step_done" : "later",
           attempts, then, error ? " error=\"" : "", error ? error : "",
           error ? "\"" : "");
  cam_event_free(f->ev);
  f->ev = NULL;
  spool_update_delivery(bk->ds->spool, f->d.id, ds, phase, attempts, next,
                        error, delivery_written, f);
}

static void
bk_start(struct bk *bk, const struct delivery *d)
{
  struct inflight *f = xcalloc(1, sizeof(*f));

  f->bk = bk;
  f->d = *d;
  f->next = bk->inflight;
  bk->inflight = f;
  bk->ninflight++;
  /* Only phase 0 sends pictures (backend.h): the later ones need the
   * event's fields, not its attachments read back from the spool. */
  f->ev = spool_load_delivery(bk->ds->spool, d->id, d->phase == 0);
  if (f->ev == NULL) {
    log_error("delivery", "delivery=%" PRId64 " event=%" PRId64
              " msg=\"event missing from the spool\"", d->id, d->event_id);
    f->answered = 1;
    spool_update_delivery(bk->ds->spool, d->id, DELIVERY_FAILED, d->phase,
                          d->attempts, 0, "event missing from the spool",
                          delivery_written, f);
    return;
  }
  bk->ops->deliver(bk->state, f->ev, d->phase, delivery_done, f);
}

/* Starts what is due, then sleeps until the next thing can change that:
 * a delivery's outcome written (delivery_written), a new event
 * (delivery_kick), or the next try's time. A due delivery that is in flight
 * already is not a reason to wake: its outcome is. */
static void
bk_dispatch(struct bk *bk)
{
  struct delivery due[DELIVERY_BATCH];
  int64_t busy[256];
  size_t nbusy = 0;
  int64_t now = mono_ms();
  int64_t next;
  int room;
  int n;

  if (bk->state == NULL || bk->ds->closed)
    return;
  if (now < bk->hold_until) {
    bk_arm(bk, bk->hold_until - now);
    return;
  }
  room = bk->ops->capacity(bk->state);
  if (room > DELIVERY_BATCH)
    room = DELIVERY_BATCH;
  for (struct inflight *f = bk->inflight; f && nbusy < 256; f = f->next)
    busy[nbusy++] = f->d.id;
  if (room <= 0 || nbusy >= 256) {
    /* Full, or not connected: an outcome frees room, a reconnect or a
     * rate window does not say so, hence the short poll of capacity()
     * alone, without asking the spool. */
    bk_arm(bk, DELIVERY_POLL_MS);
    return;
  }
  n = spool_due(bk->ds->spool, bk->name, now_ms(), busy, nbusy, due,
                (size_t)room);
  for (int i = 0; i < n; i++)
    bk_start(bk, &due[i]);
  next = spool_next_due(bk->ds->spool, bk->name) - now_ms();
  /* Due now but not started: in flight, or no room left; either way an
   * outcome comes first. */
  bk_arm(bk, next <= 0 ? DELIVERY_POLL_MS : next);
}

static void
bk_notice_stored(void *arg, int ok, int64_t event_id)
{
  struct delivery_sched *ds = arg;

  log_info("delivery", "event=%" PRId64 " stored=%d msg=\"notice\"",
           event_id, ok);
  if (ok && !ds->closed)
    delivery_kick(ds);
}

/* A backend's notice for the others (backend.h, gateway/notice.h). */
static void
bk_notice(void *arg, const char *kind, const char *title, const char *text)
{
  struct bk *bk = arg;

  notice_send(bk->ds->spool, bk->cfg, bk->name, kind, title, text,
              bk_notice_stored, bk->ds);
}

static struct bk *
bk_open(struct delivery_sched *ds, const struct backend_conf *bc)
{
  struct bk *bk = xcalloc(1, sizeof(*bk));
  char err[512] = "";

  bk->ds = ds;
  bk->name = xstrdup(bc->name);
  bk->cfg = config_ref(ds->cfg);
  bk->open_cfg = config_ref(ds->cfg);
  bk->bc = bc;
  bk->ops = backend_ops_for(bc->type, err, sizeof(err));
  bk->timer = evtimer_new(ds->base, bk_timer_cb, bk);
  if (bk->ops)
    bk->state = bk->ops->open(bc, ds->cfg, ds->base, ds->notify, err,
                              sizeof(err));
  if (bk->state == NULL)
    log_error("delivery", "backend=%s error=\"%s\" msg=\"backend not "
              "started; its deliveries wait in the spool\"", bc->name,
              err[0] ? err : "unknown backend type");
  else
    bk_arm(bk, 0);
  if (bk->state && bk->ops->set_notice)
    bk->ops->set_notice(bk->state, bk_notice, bk);
  return bk;
}

static void
bk_close(struct bk *bk)
{
  if (bk->state) {
    bk->ops->close(bk->state);
    bk->state = NULL;
  }
  evtimer_del(bk->timer);
}

static void
delivery_open_all(struct delivery_sched *ds)
{
  struct bk **tail = &ds->bks;

  for (size_t i = 0; i < ds->cfg->nbackends; i++) {
    *tail = bk_open(ds, &ds->cfg->backends[i]);
    tail = &(*tail)->next;
  }
}

struct delivery_sched *
delivery_new(struct event_base *base, struct spool *sp, struct notify *n,
             struct config *cfg)
{
  struct delivery_sched *ds = xcalloc(1, sizeof(*ds));

  ds->base = base;
  ds->spool = sp;
  ds->notify = n;
  ds->cfg = config_ref(cfg);
  delivery_open_all(ds);
  return ds;
}

static void
delivery_retire_all(struct delivery_sched *ds)
{
  while (ds->bks) {
    struct bk *bk = ds->bks;

    ds->bks = bk->next;
    bk_close(bk);
    bk->next = ds->retired;
    ds->retired = bk;
  }
}

/* Moves a running backend whose conf the new config did not change over
 * to that config. The backend's own state still holds pointers into the
 * config it was opened with (its backend_conf, strings such as the MQTT
 * client id, the config's path, the cameras it announced), so that config
 * stays alive through bk->open_cfg until the backend closes: reopening
 * only to swap pointers would drop the broker session, and Home Assistant
 * would see camgate go offline. bk->bc and bk->cfg, which the scheduler
 * reads (retry settings, notices), follow the new config; a backend that
 * reads the config at delivery time is pointed at it by reconfigure(). */
static void
bk_keep(struct bk *bk, struct config *cfg, const struct backend_conf *bc)
{
  config_unref(bk->cfg);
  bk->cfg = config_ref(cfg);
  bk->bc = bc;
  if (bk->ops->reconfigure)
    bk->ops->reconfigure(bk->state, bc, cfg);
  log_info("delivery", "backend=%s msg=\"unchanged by the reload; kept "
           "running\"", bk->name);
}

/* Closes every current backend that cfg removes or changes, or that is
 * not running (it gets a new try), before any new one opens: a changed
 * MQTT backend must leave the broker before its successor, which may use
 * the same client id, arrives. Returns the backends kept, in old order. */
static struct bk *
delivery_retire_changed(struct delivery_sched *ds, struct config *cfg)
{
  struct bk *kept = NULL;
  struct bk **tail = &kept;

  while (ds->bks) {
    struct bk *bk = ds->bks;
    const struct backend_conf *bc = config_backend(cfg, bk->name);

    ds->bks = bk->next;
    bk->next = NULL;
    if (bk->state && bc && config_backend_equal(bk->bc, bc)) {
      *tail = bk;
      tail = &bk->next;
      continue;
    }
    bk_close(bk);
    bk->next = ds->retired;
    ds->retired = bk;
  }
  return kept;
}

void
delivery_reload(struct delivery_sched *ds, struct config *cfg)
{
  struct bk *kept = delivery_retire_changed(ds, cfg);
  struct bk **tail = &ds->bks;

  config_unref(ds->cfg);
  ds->cfg = config_ref(cfg);
  for (size_t i = 0; i < cfg->nbackends; i++) {
    const struct backend_conf *bc = &cfg->backends[i];
    struct bk **pp = &kept;
    struct bk *bk;

    while (*pp && strcmp((*pp)->name, bc->name) != 0)
      pp = &(*pp)->next;
    bk = *pp;
    if (bk) {
      *pp = bk->next;
      bk->next = NULL;
      bk_keep(bk, cfg, bc);
      bk_dispatch(bk);
    } else {
      bk = bk_open(ds, bc);
    }
    *tail = bk;
    tail = &bk->next;
  }
}

void
delivery_kick(struct delivery_sched *ds)
{
  for (struct bk *bk = ds->bks; bk; bk = bk->next)
    if (bk->state && !ds->closed)
      bk_soon(bk);
}

int
delivery_inflight(const struct delivery_sched *ds)
{
  int n = 0;

  for (const struct bk *bk = ds->bks; bk; bk = bk->next)
    for (const struct inflight *f = bk->inflight; f; f = f->next)
      n += !f->answered;
  return n;
}

void
delivery_close(struct delivery_sched *ds)
{
  ds->closed = 1;
  delivery_retire_all(ds);
}

static void
bk_free(struct bk *bk)
{
  while (bk->inflight) {
    struct inflight *f = bk->inflight;

    bk->inflight = f->next;
    cam_event_free(f->ev);
    free(f);
  }
  event_free(bk->timer);
  config_unref(bk->cfg);
  config_unref(bk->open_cfg);
  free(bk->name);
  free(bk);
}

void
delivery_free(struct delivery_sched *ds)
{
  if (ds == NULL)
    return;
  delivery_retire_all(ds);
  while (ds->retired) {
    struct bk *bk = ds->retired;

    ds->retired = bk->next;
    bk_free(bk);
  }
  config_unref(ds->cfg);
  free(ds);
}
