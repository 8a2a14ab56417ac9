/* Unit tests of the spool: group commit, deliveries, large attachments,
 * failure injection, pruning, and what survives reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <sqlite3.h>

#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notify.h"
#include "gateway/spool.h"

struct fixture {
  char dir[256];
  struct event_base *base;
  struct notify *notify;
  struct spool *sp;
  int stored;
  int ok;
  int64_t ids[64];
  int written;
};

static void
on_stored(void *arg, int ok, int64_t id)
{
  struct fixture *f = arg;

  f->ids[f->stored++] = ok ? id : 0;
  f->ok += ok;
}

static void
on_written(void *arg, int ok)
{
  struct fixture *f = arg;

  f->written += ok;
}

/* Runs the loop until cond holds; at most 5 s. */
static void
run_until(struct fixture *f, const int *counter, int want)
{
  for (int i = 0; i < 500 && *counter < want; i++) {
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    usleep(10000);
  }
  assert_int_equal(*counter, want);
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

  snprintf(f->dir, sizeof(f->dir), "/tmp/camgate-spool-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  fixture_open(f);
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

static struct cam_event *
make_event(const char *camera, size_t attlen)
{
  struct cam_event *ev = cam_event_new();

  cam_event_set(&ev->camera, camera);
  cam_event_set(&ev->camera_name, "Camera");
  cam_event_set(&ev->source, "smtp");
  cam_event_set(&ev->kind, "motion");
  cam_event_set(&ev->title, "Motion Detected");
  ev->state = EVENT_START;
  ev->recv_time = now_ms();
  ev->device_time = 1714566645000;
  cam_event_add_label(ev, "channel", "D4");
  if (attlen) {
    unsigned char *data = malloc(attlen);

    for (size_t i = 0; i < attlen; i++)
      data[i] = (unsigned char)(i * 7 + 3);
    data[0] = 0xff;
    data[1] = 0xd8;
    cam_event_add_attachment_owned(ev, "a.jpg", "image/jpeg", data, attlen);
  }
  return ev;
}

static void
test_store_and_load(void **state)
{
  struct fixture *f = *state;
  struct route routes[2] = {
    {.backend = "ha", .rule = "all"}, {.backend = "phone", .rule = "all"}
  };
  struct delivery due[8];
  struct cam_event *ev;

  /* 20 events queued at once: one or a few group commits. */
  for (int i = 0; i < 20; i++)
    spool_submit(f->sp, make_event(i % 2 ? "a" : "b", 1000), routes, 2,
                 on_stored, f);
  run_until(f, &f->stored, 20);
  assert_int_equal(f->ok, 20);
  for (int i = 1; i < 20; i++)
    assert_true(f->ids[i] > f->ids[i - 1]);
  assert_int_equal(spool_pending(f->sp, NULL), 40);
  assert_int_equal(spool_pending(f->sp, "ha"), 20);

  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 8), 8);
  assert_int_equal(due[0].event_id, f->ids[0]);
  assert_int_equal(due[7].event_id, f->ids[7]);
  /* Busy ids are skipped. */
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), &due[0].id, 1, due, 1),
                   1);
  assert_int_equal(due[0].event_id, f->ids[1]);

  ev = spool_load_event(f->sp, f->ids[3]);
  assert_non_null(ev);
  assert_string_equal(ev->camera, "a");
  assert_string_equal(ev->kind, "motion");
  assert_int_equal(ev->state, EVENT_START);
  assert_int_equal(ev->device_time, 1714566645000);
  assert_string_equal(cam_event_label(ev, "channel"), "D4");
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].len, 1000);
  assert_int_equal(ev->att[0].data[2], (unsigned char)(2 * 7 + 3));
  cam_event_free(ev);
  assert_null(spool_load_event(f->sp, 999999));
}

static void
test_large_attachment_file(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  size_t big = 3 * 1024 * 1024 + 17;
  struct cam_event *ev;

  spool_submit(f->sp, make_event("big", big), &r, 1, on_stored, f);
  run_until(f, &f->stored, 1);
  ev = spool_load_event(f->sp, f->ids[0]);
  assert_non_null(ev);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].len, big);
  /* Too big for the cache of just-stored events: read back from its file
   * under att/, when asked. */
  assert_null(ev->att[0].data);
  assert_non_null(strstr(ev->att[0].path, "/att/"));
  assert_non_null(attachment_data(&ev->att[0]));
  assert_int_equal(ev->att[0].data[big - 1],
                   (unsigned char)((big - 1) * 7 + 3));
  cam_event_free(ev);
}

/* A picture the decoder left in a file moves into the spool's att/ with
 * its event: no copy in memory, read back only when a backend asks. */
static void
test_picture_file_moves_in(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct cam_event *ev = make_event("file", 0);
  struct cam_event *back;
  const unsigned char *bytes;
  char tmp[300];
  FILE *fp;

  snprintf(tmp, sizeof(tmp), "%s/pic-test", f->dir);
  fp = fopen(tmp, "wb");
  assert_non_null(fp);
  for (int i = 0; i < 5000; i++)
    fputc(i % 251, fp);
  assert_int_equal(fclose(fp), 0);
  cam_event_add_attachment_file(ev, "big.jpg", "image/jpeg", tmp, 5000);
  spool_submit(f->sp, ev, &r, 1, on_stored, f);
  run_until(f, &f->stored, 1);
  assert_int_equal(f->ok, 1);
  assert_int_equal(access(tmp, F_OK), -1);

  /* Once from the cache of just-stored events, once from the database. */
  for (int pass = 0; pass < 2; pass++) {
    back = spool_load_event(f->sp, f->ids[0]);
    assert_non_null(back);
    assert_int_equal(back->natt, 1);
    assert_null(back->att[0].data);
    assert_non_null(strstr(back->att[0].path, "/att/"));
    assert_int_equal(back->att[0].len, 5000);
    bytes = attachment_data(&back->att[0]);
    assert_non_null(bytes);
    assert_int_equal(bytes[4999], 4999 % 251);
    assert_int_equal(access(back->att[0].path, F_OK), 0);
    cam_event_free(back);
  }
}

/* Snapshots go through the WAL; the checkpointer thread copies it into
 * the database as it fills, so the WAL file is reused rather than growing
 * with everything ever written (15 MB here, in 6 batches). */
static void
test_wal_stays_bounded(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  char path[300];
  struct stat st;

  for (int b = 0; b < 6; b++) {
    for (int i = 0; i < 10; i++)
      spool_submit(f->sp, make_event("wal", 250 * 1024), &r, 1, on_stored,
                   f);
    run_until(f, &f->stored, (b + 1) * 10);
    usleep(300000);
  }
  assert_int_equal(f->ok, 60);
  snprintf(path, sizeof(path), "%s/spool.db-wal", f->dir);
  assert_int_equal(stat(path, &st), 0);
  assert_true(st.st_size < 10 * 1024 * 1024);
}

/* The camera's own message (mode forward) comes back as ev->raw, not as
 * an attachment: in the row when small, in a file beside the large
 * attachment when large; an event without one has none. */
static void
test_raw_message(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  size_t big = 2 * 1024 * 1024 + 5;
  struct cam_event *ev = make_event("fwd", 100);
  unsigned char *raw = malloc(big);

  for (size_t i = 0; i < big; i++)
    raw[i] = (unsigned char)(i * 13 + 1);
  cam_event_set_raw(ev, "From: a\r\n\r\nhi\r\n", 15);
  spool_submit(f->sp, ev, &r, 1, on_stored, f);
  ev = make_event("fwd", big);
  cam_event_set_raw(ev, raw, big);
  spool_submit(f->sp, ev, &r, 1, on_stored, f);
  spool_submit(f->sp, make_event("plain", 10), &r, 1, on_stored, f);
  run_until(f, &f->stored, 3);
  ev = spool_load_event(f->sp, f->ids[0]);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->raw_len, 15);
  assert_memory_equal(ev->raw, "From: a\r\n\r\nhi\r\n", 15);
  cam_event_free(ev);
  ev = spool_load_event(f->sp, f->ids[1]);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].len, big);
  assert_int_equal(ev->raw_len, big);
  assert_memory_equal(ev->raw, raw, big);
  cam_event_free(ev);
  ev = spool_load_event(f->sp, f->ids[2]);
  assert_null(ev->raw);
  cam_event_free(ev);
  free(raw);
}

/* Overwrites every stored picture in the database behind the spool's
 * back: what a load returns afterwards with the original bytes came from
 * memory, with zeros from the database. */
static void
zero_pictures(struct fixture *f)
{
  char path[300];
  sqlite3 *db = NULL;

  snprintf(path, sizeof(path), "%s/spool.db", f->dir);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  assert_int_equal(sqlite3_exec(db, "UPDATE attachments SET"
                                " data=zeroblob(length(data))"
                                " WHERE data IS NOT NULL", NULL, NULL,
                                NULL), SQLITE_OK);
  assert_int_equal(sqlite3_changes(db) > 0, 1);
  sqlite3_close(db);
}

/* The dispatcher may find a committed event in the database before the
 * loop has run the writer's answer: the event is in memory already then.
 * Its first load takes it from there, a later phase gets the fields
 * without the pictures, and a load after that reads the database. */
static void
test_first_delivery_from_memory(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct delivery due[1];
  struct cam_event *ev;

  spool_submit(f->sp, make_event("mem", 1000), &r, 1, on_stored, f);
  /* Committed, but the loop has not run: no answer yet. */
  for (int i = 0; i < 500 && spool_pending(f->sp, "ha") < 1; i++)
    usleep(10000);
  assert_int_equal(f->stored, 0);
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 1), 1);
  zero_pictures(f);

  ev = spool_load_delivery(f->sp, due[0].id, 1);
  assert_non_null(ev);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].data[2], (unsigned char)(2 * 7 + 3));
  cam_event_free(ev);

  ev = spool_load_delivery(f->sp, due[0].id, 0);
  assert_non_null(ev);
  assert_string_equal(ev->camera, "mem");
  assert_string_equal(ev->rule, "all");
  assert_int_equal(ev->natt, 0);
  cam_event_free(ev);

  ev = spool_load_delivery(f->sp, due[0].id, 1);
  assert_int_equal(ev->natt, 1);
  assert_int_equal(ev->att[0].data[2], 0);
  cam_event_free(ev);
  run_until(f, &f->stored, 1);
}

/* More stored at once than the cache holds (30 x 100 KB against 2 MB):
 * deliveries start with the oldest, so the oldest stay in memory and the
 * newest are read from the database. */
static void
test_cache_keeps_the_oldest(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct cam_event *ev;

  for (int i = 0; i < 30; i++)
    spool_submit(f->sp, make_event("many", 100 * 1024), &r, 1, on_stored,
                 f);
  run_until(f, &f->stored, 30);
  assert_int_equal(f->ok, 30);
  zero_pictures(f);
  ev = spool_load_event(f->sp, f->ids[0]);
  assert_int_equal(ev->att[0].data[2], (unsigned char)(2 * 7 + 3));
  cam_event_free(ev);
  ev = spool_load_event(f->sp, f->ids[29]);
  assert_int_equal(ev->att[0].data[2], 0);
  cam_event_free(ev);
}

static void
test_update_and_reopen(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct delivery due[4];
  int64_t later = now_ms() + 60000;

  spool_submit(f->sp, make_event("a", 0), &r, 1, on_stored, f);
  spool_submit(f->sp, make_event("a", 0), &r, 1, on_stored, f);
  run_until(f, &f->stored, 2);
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 4), 2);
  spool_update_delivery(f->sp, due[0].id, DELIVERY_DONE, 0, 1, 0, NULL,
                        on_written, f);
  spool_update_delivery(f->sp, due[1].id, DELIVERY_PENDING, 1, 0, later,
                        NULL, on_written, f);
  run_until(f, &f->written, 2);
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 4), 0);
  assert_int_equal(spool_next_due(f->sp, "ha"), later);

  /* Everything committed is there after a reopen. */
  fixture_close(f);
  fixture_open(f);
  assert_int_equal(spool_pending(f->sp, "ha"), 1);
  assert_int_equal(spool_due(f->sp, "ha", later, NULL, 0, due, 4), 1);
  assert_int_equal(due[0].phase, 1);
}

/* Reopens the spool with CAMGATE_SPOOL_FAIL set (it is read at open) and
 * makes batches fail as how says ("" at the start, "commit" at the
 * commit) until flag is removed. */
static void
fail_batches(struct fixture *f, const char *how, char *flag, size_t flagsz)
{
  FILE *fp;

  snprintf(flag, flagsz, "%s/fail", f->dir);
  setenv("CAMGATE_SPOOL_FAIL", flag, 1);
  fixture_close(f);
  fixture_open(f);
  fp = fopen(flag, "w");
  assert_non_null(fp);
  fputs(how, fp);
  fclose(fp);
}

static void
test_injected_failure(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  char flag[300];

  fail_batches(f, "", flag, sizeof(flag));
  spool_submit(f->sp, make_event("a", 10), &r, 1, on_stored, f);
  run_until(f, &f->stored, 1);
  assert_int_equal(f->ok, 0);
  assert_int_equal(spool_pending(f->sp, NULL), 0);
  unlink(flag);
  spool_submit(f->sp, make_event("a", 10), &r, 1, on_stored, f);
  run_until(f, &f->stored, 2);
  assert_int_equal(f->ok, 1);
  unsetenv("CAMGATE_SPOOL_FAIL");
}

/* A batch that fails at its commit, after its events went into the cache
 * of just-stored events, takes them back: the next event gets the same
 * id from SQLite and must not be answered with the failed one. */
static void
test_failed_commit_leaves_no_cached_event(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct delivery due[2];
  struct cam_event *ev;
  char flag[300];

  fail_batches(f, "commit\n", flag, sizeof(flag));
  spool_submit(f->sp, make_event("failed", 1000), &r, 1, on_stored, f);
  run_until(f, &f->stored, 1);
  assert_int_equal(f->ok, 0);
  assert_int_equal(spool_pending(f->sp, NULL), 0);
  unlink(flag);
  spool_submit(f->sp, make_event("stored", 1000), &r, 1, on_stored, f);
  run_until(f, &f->stored, 2);
  assert_int_equal(f->ok, 1);
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 2), 1);
  ev = spool_load_delivery(f->sp, due[0].id, 1);
  assert_non_null(ev);
  assert_string_equal(ev->camera, "stored");
  cam_event_free(ev);
  unsetenv("CAMGATE_SPOOL_FAIL");
}

static void
test_prune(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  struct cam_event *old = make_event("a", 0);
  struct delivery due[4];

  old->recv_time = now_ms() - 3600 * 1000;
  spool_submit(f->sp, old, &r, 1, on_stored, f);
  old = make_event("a", 0);
  old->recv_time = now_ms() - 3600 * 1000;
  spool_submit(f->sp, old, &r, 1, on_stored, f);
  run_until(f, &f->stored, 2);
  /* One delivered, one still pending: only the delivered one goes. */
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 4), 2);
  spool_update_delivery(f->sp, due[0].id, DELIVERY_DONE, 0, 1, 0, NULL,
                        on_written, f);
  spool_prune(f->sp, 60);
  spool_update_delivery(f->sp, due[1].id, DELIVERY_PENDING, 0, 1, 0, NULL,
                        on_written, f);
  run_until(f, &f->written, 2);
  {
    struct cam_event *gone = spool_load_event(f->sp, f->ids[0]);
    struct cam_event *kept = spool_load_event(f->sp, f->ids[1]);

    assert_null(gone);
    assert_non_null(kept);
    cam_event_free(kept);
  }
}

static int64_t last_stored_id;

static void
on_counted(void *arg, int ok, int64_t id)
{
  struct fixture *f = arg;

  f->stored++;
  f->ok += ok;
  last_stored_id = id;
}

/* A prune removes at most SPOOL_PRUNE_BATCH events per job and queues the
 * next job behind whatever came meanwhile, until nothing old is left. */
static void
test_prune_in_batches(void **state)
{
  struct fixture *f = *state;
  struct route r = {.backend = "ha", .rule = "all"};
  int64_t first = 0, last;
  struct cam_event *ev;
  int gone = 0;

  for (int i = 0; i < 600; i++) {
    ev = make_event("old", 1000);
    ev->recv_time = now_ms() - 3600 * 1000;
    spool_submit(f->sp, ev, NULL, 0, on_counted, f);
    if (i == 0) {
      run_until(f, &f->stored, 1);
      first = last_stored_id;
    }
  }
  run_until(f, &f->stored, 600);
  assert_int_equal(f->ok, 600);
  last = last_stored_id;
  assert_int_equal(last - first, 599);
  spool_prune(f->sp, 60);
  /* An alert that comes meanwhile is stored as usual, and kept. */
  spool_submit(f->sp, make_event("new", 1000), &r, 1, on_counted, f);
  for (int i = 0; i < 1000 && !gone; i++) {
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    ev = spool_load_event(f->sp, last);
    gone = ev == NULL;
    cam_event_free(ev);
    if (!gone)
      usleep(10000);
  }
  assert_true(gone);
  run_until(f, &f->stored, 601);
  for (int64_t id = first; id <= last; id += 97) {
    ev = spool_load_event(f->sp, id);
    assert_null(ev);
  }
  ev = spool_load_event(f->sp, last_stored_id);
  assert_non_null(ev);
  assert_string_equal(ev->camera, "new");
  cam_event_free(ev);
}

/* A backend gone from the config: its pending deliveries are given up,
 * so that they neither hold their event in the spool for ever nor go out
 * long stale if a backend of that name comes back. */
static void
test_removed_backend_deliveries_given_up(void **state)
{
  struct fixture *f = *state;
  struct route r[2] = {{.backend = "ha", .rule = "all"},
                       {.backend = "ghost", .rule = "all"}};
  static const char *const stay[] = {"ha"};
  struct delivery due[4];
  int n = -1;

  spool_submit(f->sp, make_event("a", 10), r, 2, on_stored, f);
  run_until(f, &f->stored, 1);
  assert_int_equal(spool_due(f->sp, "ghost", now_ms(), NULL, 0, due, 4), 1);
  spool_drop_backends_except(f->sp, stay, 1);
  for (int i = 0; i < 500 && n != 0; i++) {
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    n = spool_due(f->sp, "ghost", now_ms(), NULL, 0, due, 4);
    if (n != 0)
      usleep(10000);
  }
  assert_int_equal(n, 0);
  assert_int_equal(spool_due(f->sp, "ha", now_ms(), NULL, 0, due, 4), 1);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_store_and_load, setup, teardown),
    cmocka_unit_test_setup_teardown(test_large_attachment_file, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_raw_message, setup, teardown),
    cmocka_unit_test_setup_teardown(test_wal_stays_bounded, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_picture_file_moves_in, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_first_delivery_from_memory, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_cache_keeps_the_oldest, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_update_and_reopen, setup,
                                    teardown),
    cmocka_unit_test_setup_teardown(test_injected_failure, setup, teardown),
    cmocka_unit_test_setup_teardown(test_failed_commit_leaves_no_cached_event,
                                    setup, teardown),
    cmocka_unit_test_setup_teardown(test_prune, setup, teardown),
    cmocka_unit_test_setup_teardown(test_prune_in_batches, setup, teardown),
    cmocka_unit_test_setup_teardown(test_removed_backend_deliveries_given_up,
                                    setup, teardown),
  };

  evthread_use_pthreads();
  log_set_level(LOGL_WARN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
