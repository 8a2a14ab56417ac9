/* daemon.c - see daemon.h. */
#include "gateway/daemon.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/auth.h"
#include "gateway/check.h"
#include "gateway/delivery.h"
#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/spool.h"
#include "ingest/mail.h"
#include "ingest/smtp.h"

#define DAEMON_PRUNE_S 60
#define DAEMON_STOP_POLL_MS 50
/* One yescrypt check holds 16 MB while it runs; a second thread would
 * double that peak for logins that a camera pays once (success cache). */
#define DAEMON_AUTH_WORKERS 1

struct daemon {
  struct event_base *base;
  struct config *cfg;
  struct notify *notify;
  struct spool *spool;
  struct smtp_server *smtp;
  struct delivery_sched *delivery;
  struct event *sig_term;
  struct event *sig_int;
  struct event *sig_hup;
  struct event *prune;
  struct event *stop_timer;
  int64_t stop_deadline;
  int stopping;
};

static void
daemon_stored(void *arg, int64_t event_id)
{
  struct daemon *d = arg;

  (void)event_id;
  delivery_kick(d->delivery);
}

static void
daemon_apply_log_level(const struct config *cfg)
{
  enum log_level lvl;

  if (log_level_parse(cfg->log_level, &lvl) == 0)
    log_set_level(lvl);
}

/* Alerts waiting for a backend the config no longer has are given up. */
static void
daemon_drop_removed_backends(struct daemon *d)
{
  const char **names = xcalloc(d->cfg->nbackends + 1, sizeof(*names));

  for (size_t i = 0; i < d->cfg->nbackends; i++)
    names[i] = d->cfg->backends[i].name;
  spool_drop_backends_except(d->spool, names, d->cfg->nbackends);
  free(names);
}

static void
daemon_reload(struct daemon *d)
{
  char err[8192] = "";
  struct config *cfg = config_load(d->cfg->path, err, sizeof(err));

  if (cfg == NULL) {
    char esc[2048];

    log_error("main", "config=%s msg=\"reload refused, keeping the running "
              "config; run camgate check -c on it\" errors=%s", d->cfg->path,
              log_escape(esc, sizeof(esc), err, strlen(err)));
    return;
  }
  /* An editor that truncated the file, or a half-written copy: keeping
   * every camera out on its word is never what was meant. */
  if (cfg->ncameras == 0 && cfg->nbackends == 0 && cfg->nrules == 0) {
    log_error("main", "config=%s msg=\"reload refused, keeping the running "
              "config: the new one has no cameras, backends or rules (an "
              "empty or cut-off file?)\"", cfg->path);
    config_unref(cfg);
    return;
  }
  if (smtp_server_reload(d->smtp, cfg, err, sizeof(err)) != 0) {
    char esc[1024];

    log_error("main", "config=%s msg=\"reload refused, keeping the running "
              "config\" error=%s", cfg->path,
              log_escape(esc, sizeof(esc), err, strlen(err)));
    config_unref(cfg);
    return;
  }
  if (strcmp(cfg->spool_path, d->cfg->spool_path) != 0)
    log_warn("main", "spool=%s running_spool=%s msg=\"spool.path changed; "
             "it takes effect after a restart\"", cfg->spool_path,
             d->cfg->spool_path);
  delivery_reload(d->delivery, cfg);
  config_unref(d->cfg);
  d->cfg = cfg;
  daemon_drop_removed_backends(d);
  daemon_apply_log_level(cfg);
  log_info("main", "config=%s msg=\"reloaded\" cameras=%zu backends=%zu "
           "rules=%zu", cfg->path, cfg->ncameras, cfg->nbackends,
           cfg->nrules);
  config_print_warnings(cfg, stderr);
  check_print_kind_warnings(cfg, stderr);
}

static void
daemon_stop_check(evutil_socket_t fd, short what, void *arg)
{
  struct daemon *d = arg;
  struct timeval tv = {0, DAEMON_STOP_POLL_MS * 1000};
  int sessions = smtp_server_sessions(d->smtp);
  int inflight = delivery_inflight(d->delivery);

  (void)fd;
  (void)what;
  if ((sessions == 0 && inflight == 0) || mono_ms() >= d->stop_deadline) {
    if (sessions || inflight)
      log_warn("main", "sessions=%d deliveries=%d msg=\"grace period over; "
               "messages still arriving were not acknowledged (cameras "
               "send them again), unfinished deliveries are retried at the "
               "next start\"", sessions, inflight);
    event_base_loopbreak(d->base);
    return;
  }
  evtimer_add(d->stop_timer, &tv);
}

static void
daemon_signal(evutil_socket_t sig, short what, void *arg)
{
  struct daemon *d = arg;

  (void)what;
  if (sig == SIGHUP) {
    log_info("main", "signal=HUP msg=\"reloading the config\"");
    daemon_reload(d);
    return;
  }
  if (d->stopping)
    return;
  d->stopping = 1;
  log_info("main", "signal=%s msg=\"stopping: no new sessions, finishing "
           "what is in flight\" grace_s=%d",
           sig == SIGTERM ? "TERM" : "INT", d->cfg->shutdown_grace);
  d->stop_deadline = mono_ms() + (int64_t)d->cfg->shutdown_grace * 1000;
  smtp_server_shutdown(d->smtp);
  daemon_stop_check(-1, 0, d);
}

static void
daemon_prune(evutil_socket_t fd, short what, void *arg)
{
  struct daemon *d = arg;

  (void)fd;
  (void)what;
  spool_prune(d->spool, d->cfg->retention);
}

static int
daemon_start(struct daemon *d)
{
  char err[1024] = "";
  struct timeval prune = {DAEMON_PRUNE_S, 0};

  d->notify = notify_new(d->base);
  /* yescrypt costs tens of milliseconds a check: on the loop, a burst of
   * wrong passwords would stall every session. */
  if (auth_workers_start(d->notify, DAEMON_AUTH_WORKERS) != 0)
    log_warn("main", "msg=\"no password check threads; checks run on the "
             "event loop\"");
  d->spool = spool_open(d->cfg->spool_path, d->notify, err, sizeof(err));
  if (d->spool == NULL) {
    log_error("main", "spool=%s error=\"%s\"", d->cfg->spool_path, err);
    return -1;
  }
  /* Listeners first: a camgate that cannot bind must not connect to the
   * broker and knock a running instance's session off it. */
  d->smtp = smtp_server_new(d->base, d->cfg, d->spool, daemon_stored, d,
                            err, sizeof(err));
  if (d->smtp == NULL) {
    log_error("main", "error=\"%s\"", err);
    return -1;
  }
  daemon_drop_removed_backends(d);
  d->delivery = delivery_new(d->base, d->spool, d->notify, d->cfg);
  d->sig_term = evsignal_new(d->base, SIGTERM, daemon_signal, d);
  d->sig_int = evsignal_new(d->base, SIGINT, daemon_signal, d);
  d->sig_hup = evsignal_new(d->base, SIGHUP, daemon_signal, d);
  d->prune = event_new(d->base, -1, EV_PERSIST, daemon_prune, d);
  d->stop_timer = evtimer_new(d->base, daemon_stop_check, d);
  event_add(d->sig_term, NULL);
  event_add(d->sig_int, NULL);
  event_add(d->sig_hup, NULL);
  event_add(d->prune, &prune);
  spool_prune(d->spool, d->cfg->retention);
  return 0;
}

static void
daemon_free_event(struct event *ev)
{
  if (ev)
    event_free(ev);
}

/* Order matters: backends close first (what they had in flight goes back
 * to the spool), then the spool writes its queue and runs its last
 * answers, then the sessions and the rest go, the scheduler's memory
 * last. */
static void
daemon_stop(struct daemon *d)
{
  if (d->delivery)
    delivery_close(d->delivery);
  /* Before the sessions go: a message still being committed when the
   * grace period ran out gets its answer while its session exists. */
  spool_close(d->spool);
  smtp_server_free(d->smtp);
  auth_workers_stop();
  notify_free(d->notify);
  delivery_free(d->delivery);
  daemon_free_event(d->sig_term);
  daemon_free_event(d->sig_int);
  daemon_free_event(d->sig_hup);
  daemon_free_event(d->prune);
  daemon_free_event(d->stop_timer);
  config_unref(d->cfg);
  event_base_free(d->base);
}

int
daemon_run(const char *config_path)
{
  struct daemon d;
  char err[8192] = "";
  int rc = 1;

  memset(&d, 0, sizeof(d));
  d.cfg = config_load(config_path, err, sizeof(err));
  if (d.cfg == NULL) {
    fprintf(stderr, "%s", err);
    return 2;
  }
  daemon_apply_log_level(d.cfg);
  /* The same warnings `camgate check` prints: an empty or wide-open
   * config runs, but says so. */
  config_print_warnings(d.cfg, stderr);
  check_print_kind_warnings(d.cfg, stderr);
  signal(SIGPIPE, SIG_IGN);
  evthread_use_pthreads();
  mail_init();
  d.base = event_base_new();
  if (d.base == NULL)
    fatal("main: event_base_new failed");
  if (daemon_start(&d) == 0) {
    log_info("main", "msg=ready version=%s config=%s cameras=%zu "
             "backends=%zu rules=%zu", CAMGATE_VERSION, config_path,
             d.cfg->ncameras, d.cfg->nbackends, d.cfg->nrules);
    event_base_dispatch(d.base);
    rc = 0;
  }
  daemon_stop(&d);
  log_info("main", "msg=stopped exit=%d", rc);
  return rc;
}
