/* test_auth_async.c - password checks on worker threads: the verdict comes
 * back on the loop thread through notify, a cache hit answers at once, an
 * unknown user still costs one dummy check, and a cancelled check never
 * calls back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/auth.h"
#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notify.h"

#define WAIT_MS 10000

struct fixture {
  struct event_base *base;
  struct notify *notify;
  struct config *cfg;
};

struct answer {
  int called;
  const struct camera_conf *cam;
};

static void
answer_cb(void *arg, const struct camera_conf *cam)
{
  struct answer *a = arg;

  a->called++;
  a->cam = cam;
}

static int
fixture_setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof(*f));
  char err[1024];
  char path[] = "/tmp/camgate-test-auth-async-XXXXXX";
  char *hash = auth_hash_password("s3cret!");
  char *yaml;
  FILE *fp;
  int fd;

  assert_non_null(hash);
  fd = mkstemp(path);
  assert_true(fd >= 0);
  fp = fdopen(fd, "w");
  assert_non_null(fp);
  yaml = xasprintf("cameras:\n"
                   "  - id: front\n"
                   "    smtp: {user: front-door, password_hash: \"%s\"}\n",
                   hash);
  fputs(yaml, fp);
  fclose(fp);
  f->cfg = config_load(path, err, sizeof(err));
  unlink(path);
  free(yaml);
  free(hash);
  if (f->cfg == NULL)
    fail_msg("%s", err);
  evthread_use_pthreads();
  f->base = event_base_new();
  f->notify = notify_new(f->base);
  auth_cache_clear();
  assert_int_equal(auth_workers_start(f->notify, 2), 0);
  *state = f;
  return 0;
}

static int
fixture_teardown(void **state)
{
  struct fixture *f = *state;

  auth_workers_stop();
  notify_free(f->notify);
  event_base_free(f->base);
  config_unref(f->cfg);
  auth_cache_clear();
  free(f);
  return 0;
}

/* Runs the loop until every answer in a[0..n) was called. */
static void
wait_answers(struct fixture *f, struct answer *a, size_t n)
{
  int64_t end = mono_ms() + WAIT_MS;

  for (;;) {
    size_t done = 0;

    for (size_t i = 0; i < n; i++)
      done += a[i].called > 0;
    if (done == n || mono_ms() > end)
      break;
    event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    usleep(1000);
  }
}

static void
test_verdicts_come_back(void **state)
{
  struct fixture *f = *state;
  struct answer a[3] = {{0}};
  struct auth_job *job[3];
  unsigned long before = auth_crypt_calls();

  assert_null(auth_check_start(f->cfg, "front-door", "s3cret!", answer_cb,
                               &a[0], &job[0]));
  assert_non_null(job[0]);
  assert_null(auth_check_start(f->cfg, "front-door", "wrong", answer_cb,
                               &a[1], &job[1]));
  assert_non_null(job[1]);
  /* An unknown user: one check of the dummy hash, no answer sooner. */
  assert_null(auth_check_start(f->cfg, "nobody", "s3cret!", answer_cb,
                               &a[2], &job[2]));
  assert_non_null(job[2]);
  assert_int_equal(a[0].called + a[1].called + a[2].called, 0);
  wait_answers(f, a, 3);
  assert_int_equal(a[0].called, 1);
  assert_ptr_equal(a[0].cam, &f->cfg->cameras[0]);
  assert_int_equal(a[1].called, 1);
  assert_null(a[1].cam);
  assert_int_equal(a[2].called, 1);
  assert_null(a[2].cam);
  assert_int_equal(auth_crypt_calls() - before, 3);
}

static void
test_cache_hit_answers_at_once(void **state)
{
  struct fixture *f = *state;
  struct answer a = {0};
  struct auth_job *job;
  unsigned long before;

  assert_null(auth_check_start(f->cfg, "front-door", "s3cret!", answer_cb,
                               &a, &job));
  assert_non_null(job);
  wait_answers(f, &a, 1);
  assert_non_null(a.cam);
  before = auth_crypt_calls();
  memset(&a, 0, sizeof(a));
  assert_ptr_equal(auth_check_start(f->cfg, "front-door", "s3cret!",
                                    answer_cb, &a, &job),
                   &f->cfg->cameras[0]);
  assert_null(job);
  assert_int_equal(a.called, 0);
  assert_int_equal(auth_crypt_calls(), before);
  /* The synchronous check shares the cache the workers filled. */
  assert_ptr_equal(auth_check(f->cfg, "front-door", "s3cret!"),
                   &f->cfg->cameras[0]);
  assert_int_equal(auth_crypt_calls(), before);
}

static void
test_cancelled_never_calls_back(void **state)
{
  struct fixture *f = *state;
  struct answer a[2] = {{0}};
  struct auth_job *job;
  struct auth_job *other;

  assert_null(auth_check_start(f->cfg, "front-door", "guess", answer_cb,
                               &a[0], &job));
  assert_non_null(job);
  assert_null(auth_check_start(f->cfg, "front-door", "guess2", answer_cb,
                               &a[1], &other));
  auth_job_cancel(job);
  wait_answers(f, &a[1], 1);
  assert_int_equal(a[1].called, 1);
  /* Stopping lets a check under way finish and post its verdict; running
   * what is posted shows the cancelled one stays silent. */
  auth_workers_stop();
  notify_run_pending(f->notify);
  assert_int_equal(a[0].called, 0);
}

/* Ten channels of one NVR log in at once: one crypt(3) answers them all,
 * a different password is checked on its own, and a session that went
 * away while waiting hears nothing. */
static void
test_same_login_at_once_costs_one_check(void **state)
{
  struct fixture *f = *state;
  struct answer a[7];
  struct auth_job *job[7];
  unsigned long before = auth_crypt_calls();

  memset(a, 0, sizeof(a));
  for (int i = 0; i < 5; i++) {
    assert_null(auth_check_start(f->cfg, "front-door", "s3cret!", answer_cb,
                                 &a[i], &job[i]));
    assert_non_null(job[i]);
  }
  assert_null(auth_check_start(f->cfg, "front-door", "s3cret?", answer_cb,
                               &a[5], &job[5]));
  assert_null(auth_check_start(f->cfg, "front-door", "s3cret!", answer_cb,
                               &a[6], &job[6]));
  auth_job_cancel(job[6]);
  wait_answers(f, a, 6);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(a[i].called, 1);
    assert_ptr_equal(a[i].cam, &f->cfg->cameras[0]);
  }
  assert_int_equal(a[5].called, 1);
  assert_null(a[5].cam);
  assert_int_equal(a[6].called, 0);
  assert_int_equal(auth_crypt_calls() - before, 2);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_verdicts_come_back, fixture_setup,
                                    fixture_teardown),
    cmocka_unit_test_setup_teardown(test_cache_hit_answers_at_once,
                                    fixture_setup, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_cancelled_never_calls_back,
                                    fixture_setup, fixture_teardown),
    cmocka_unit_test_setup_teardown(test_same_login_at_once_costs_one_check,
                                    fixture_setup, fixture_teardown),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
