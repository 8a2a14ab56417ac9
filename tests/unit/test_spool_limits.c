/* test_spool_limits.c - the rate limiter where it runs: in the spool
 * writer, in the transaction that stores the event. Held deliveries,
 * fold counts on the next one, summary rows, MQTT untouched, the
 * camera-wide limit, the state across a reopen (a restart during a storm
 * releases no burst), and an old spool gaining the new columns.
 *
 * Events carry receive times an hour or more ahead of the wall clock:
 * the writer decides by the later of the two, so these times are the
 * simulated clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <sqlite3.h>

#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/spool.h"

#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)

struct fixture {
  char dir[256];
  struct event_base *base;
  struct notify *notify;
  struct spool *sp;
  int stored;
  int64_t ids[64];
  int64_t t0;
};

static void
on_stored(void *arg, int ok, int64_t id)
{
  struct fixture *f = arg;

  assert_true(ok);
  f->ids[f->stored++] = id;
}

static void
run_until(struct fixture *f, int want)
{
  for (int i = 0; i < 500 && f->stored < want; i++) {
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    usleep(10000);
  }
  assert_int_equal(f->stored, want);
}

static void
fixture_open(struct fixture *f)
{
  char err[256];

  f->base = event_base_new();
  f->notify = notify_new(f->base);
  f->sp = spool_open(f->dir, f->notify, err, sizeof(err));
  assert_non_null(f->sp);
}

static void
fixture_close(struct fixture *f)
{
  spool_close(f->sp);
  notify_free(f->notify);
  event_base_free(f->base);
}

static int
setup(void **state)
{
  struct fixture *f = calloc(1, sizeof(*f));

  snprintf(f->dir, sizeof(f->dir), "/tmp/camgate-limits-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  fixture_open(f);
  f->t0 = now_ms() + HOUR_MS;
  *state = f;
  return 0;
}

static int
teardown(void **state)
{
  struct fixture *f = *state;
  char cmd[300];

  fixture_close(f);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
  assert_int_equal(system(cmd), 0);
  free(f);
  return 0;
}

static void
submit(struct fixture *f, const char *camera, int64_t at,
       const struct route *routes, size_t n)
{
  struct cam_event *ev = cam_event_new();
  int want = f->stored + 1;

  cam_event_set(&ev->camera, camera);
  cam_event_set(&ev->source, "smtp");
  cam_event_set(&ev->kind, "motion");
  ev->recv_time = at;
  spool_submit(f->sp, ev, routes, n, on_stored, f);
  run_until(f, want);
}

/* One integer from the spool through a connection of the test's own. */
static int64_t
db_int(struct fixture *f, const char *sql, int64_t arg)
{
  char path[300];
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;

  snprintf(path, sizeof(path), "%s/spool.db", f->dir);
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  sqlite3_bind_int64(st, 1, arg);
  if (sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

#define STATE_OF(f, ev, backend) \
  db_int(f, "SELECT state FROM deliveries WHERE event_id=?1 AND backend='" \
         backend "'", ev)
#define FOLDED_OF(f, ev, backend) \
  db_int(f, "SELECT folded FROM deliveries WHERE event_id=?1 AND " \
         "backend='" backend "'", ev)

static struct route
route_to(const char *backend, int64_t cooldown_ms, int summary)
{
  struct route r;

  memset(&r, 0, sizeof(r));
  r.backend = backend;
  r.rule = "r";
  r.limited = cooldown_ms > 0;
  r.limits.cooldown_ms = cooldown_ms;
  r.limits.summary = summary;
  return r;
}

static void
test_hold_and_fold(void **state)
{
  struct fixture *f = *state;
  struct route routes[2];
  struct delivery due[8];
  struct cam_event *ev;
  int64_t id;

  routes[0] = route_to("ha", 0, 0);
  routes[1] = route_to("phone", HOUR_MS, 0);
  for (int i = 0; i < 5; i++)
    submit(f, "door", f->t0 + i * 1000, routes, 2);
  /* MQTT gets every event; the phone the first, the rest are held. */
  for (int i = 0; i < 5; i++) {
    assert_int_equal(STATE_OF(f, f->ids[i], "ha"), DELIVERY_PENDING);
    assert_int_equal(STATE_OF(f, f->ids[i], "phone"),
                     i == 0 ? DELIVERY_PENDING : DELIVERY_HELD);
  }
  assert_int_equal(spool_due(f->sp, "ha", f->t0, NULL, 0, due, 8), 5);
  assert_int_equal(spool_due(f->sp, "phone", f->t0, NULL, 0, due, 8), 1);
  assert_int_equal(spool_pending(f->sp, "phone"), 1);

  /* Another camera has its own limit. */
  submit(f, "garden", f->t0 + 5000, routes, 2);
  assert_int_equal(STATE_OF(f, f->ids[5], "phone"), DELIVERY_PENDING);

  /* After the cooldown the next one carries the four held back. */
  submit(f, "door", f->t0 + HOUR_MS + 1, routes, 2);
  assert_int_equal(STATE_OF(f, f->ids[6], "phone"), DELIVERY_PENDING);
  assert_int_equal(FOLDED_OF(f, f->ids[6], "phone"), 4);
  id = db_int(f, "SELECT id FROM deliveries WHERE event_id=?1 AND "
              "backend='phone'", f->ids[6]);
  ev = spool_load_delivery(f->sp, id, 1);
  assert_non_null(ev);
  assert_string_equal(ev->rule, "r");
  assert_int_equal(ev->folded, 4);
  assert_int_equal(ev->folded_since, f->t0 + 1000);
  assert_string_equal(ev->camera, "door");
  cam_event_free(ev);
  assert_int_equal(FOLDED_OF(f, f->ids[6], "ha"), 0);
}

static void
test_summary_rows(void **state)
{
  struct fixture *f = *state;
  struct route r = route_to("phone", HOUR_MS, 1);
  struct delivery due[8];

  submit(f, "door", f->t0, &r, 1);
  submit(f, "door", f->t0 + 1000, &r, 1);
  /* The held event is the summary: pending, due when the hour is over. */
  assert_int_equal(STATE_OF(f, f->ids[1], "phone"), DELIVERY_PENDING);
  assert_int_equal(db_int(f, "SELECT next_try FROM deliveries WHERE "
                          "event_id=?1", f->ids[1]), f->t0 + HOUR_MS);
  submit(f, "door", f->t0 + 2000, &r, 1);
  submit(f, "door", f->t0 + 3000, &r, 1);
  /* The latest takes the summary's place with the count. */
  assert_int_equal(STATE_OF(f, f->ids[1], "phone"), DELIVERY_HELD);
  assert_int_equal(STATE_OF(f, f->ids[2], "phone"), DELIVERY_HELD);
  assert_int_equal(STATE_OF(f, f->ids[3], "phone"), DELIVERY_PENDING);
  assert_int_equal(FOLDED_OF(f, f->ids[3], "phone"), 2);
  assert_int_equal(FOLDED_OF(f, f->ids[1], "phone"), 0);
  assert_int_equal(spool_due(f->sp, "phone", f->t0 + HOUR_MS - 1, NULL, 0,
                             due, 8), 1);
  assert_int_equal(due[0].event_id, f->ids[0]);
  assert_int_equal(spool_due(f->sp, "phone", f->t0 + HOUR_MS, NULL, 0,
                             due, 8), 2);
  assert_int_equal(due[1].event_id, f->ids[3]);
}

static void
test_restart_keeps_state(void **state)
{
  struct fixture *f = *state;
  struct route r = route_to("phone", HOUR_MS, 0);

  submit(f, "door", f->t0, &r, 1);
  submit(f, "door", f->t0 + 1000, &r, 1);
  fixture_close(f);
  fixture_open(f);
  /* A storm goes on after a restart: still held, and still counted. */
  submit(f, "door", f->t0 + 2000, &r, 1);
  assert_int_equal(STATE_OF(f, f->ids[2], "phone"), DELIVERY_HELD);
  submit(f, "door", f->t0 + HOUR_MS, &r, 1);
  assert_int_equal(STATE_OF(f, f->ids[3], "phone"), DELIVERY_PENDING);
  assert_int_equal(FOLDED_OF(f, f->ids[3], "phone"), 2);
  assert_int_equal(db_int(f, "SELECT count(*) FROM ratelimits WHERE "
                          "camera='door' AND backend='phone' AND held=?1",
                          0), 1);
}

static void
test_camera_wide(void **state)
{
  struct fixture *f = *state;
  struct route routes[3];

  routes[0] = route_to("ha", 0, 0);
  routes[1] = route_to("phone", 1, 0);
  routes[2] = route_to("mail", 1, 0);
  for (int i = 1; i < 3; i++)
    routes[i].camera.cooldown_ms = 10 * MIN_MS;
  /* One event: both notification backends, and the camera is charged
   * once. */
  submit(f, "door", f->t0, routes, 3);
  assert_int_equal(STATE_OF(f, f->ids[0], "phone"), DELIVERY_PENDING);
  assert_int_equal(STATE_OF(f, f->ids[0], "mail"), DELIVERY_PENDING);
  submit(f, "door", f->t0 + MIN_MS, routes, 3);
  assert_int_equal(STATE_OF(f, f->ids[1], "ha"), DELIVERY_PENDING);
  assert_int_equal(STATE_OF(f, f->ids[1], "phone"), DELIVERY_HELD);
  assert_int_equal(STATE_OF(f, f->ids[1], "mail"), DELIVERY_HELD);
  assert_int_equal(db_int(f, "SELECT day_count FROM ratelimits WHERE "
                          "camera='door' AND backend=''", 0), 1);
  submit(f, "door", f->t0 + 10 * MIN_MS, routes, 3);
  assert_int_equal(FOLDED_OF(f, f->ids[2], "phone"), 1);
  assert_int_equal(FOLDED_OF(f, f->ids[2], "mail"), 1);
}

static void
test_zone_referenced(void **state)
{
  struct fixture *f = *state;
  GTimeZone *tz = g_time_zone_new_identifier("Europe/Berlin");
  struct route r = route_to("phone", HOUR_MS, 0);
  struct cam_event *ev = cam_event_new();

  r.limits.daily_cap = 1;
  r.tz = tz;
  cam_event_set(&ev->camera, "door");
  cam_event_set(&ev->source, "smtp");
  cam_event_set(&ev->kind, "motion");
  ev->recv_time = f->t0;
  spool_submit(f->sp, ev, &r, 1, on_stored, f);
  /* The job holds its own reference to the zone until it is written. */
  g_time_zone_unref(tz);
  run_until(f, 1);
  r.tz = NULL;
  submit(f, "door", f->t0 + 1000, &r, 1);
  assert_int_equal(STATE_OF(f, f->ids[1], "phone"), DELIVERY_HELD);
}

static void
test_old_spool_migrated(void **state)
{
  struct fixture *f = *state;
  char path[300];
  sqlite3 *db = NULL;
  struct route r = route_to("phone", HOUR_MS, 0);

  fixture_close(f);
  snprintf(path, sizeof(path), "%s/spool.db", f->dir);
  unlink(path);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db,
                   "CREATE TABLE deliveries(id INTEGER PRIMARY KEY,"
                   " event_id INTEGER NOT NULL, backend TEXT NOT NULL,"
                   " rule TEXT, state INTEGER NOT NULL DEFAULT 0,"
                   " phase INTEGER NOT NULL DEFAULT 0,"
                   " attempts INTEGER NOT NULL DEFAULT 0,"
                   " next_try INTEGER NOT NULL DEFAULT 0, last_error TEXT,"
                   " updated INTEGER)", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  fixture_open(f);
  submit(f, "door", f->t0, &r, 1);
  submit(f, "door", f->t0 + HOUR_MS - 1, &r, 1);
  submit(f, "door", f->t0 + HOUR_MS, &r, 1);
  assert_int_equal(FOLDED_OF(f, f->ids[2], "phone"), 1);
}

int
main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
  const struct CMUnitTest tests[] = {
    T(test_hold_and_fold),
    T(test_summary_rows),
    T(test_restart_keeps_state),
    T(test_camera_wide),
    T(test_zone_referenced),
    T(test_old_spool_migrated),
  };
#undef T

  evthread_use_pthreads();
  log_set_level(LOGL_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
