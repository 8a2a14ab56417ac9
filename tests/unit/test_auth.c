/* test_auth.c - password checks, the success cache and login throttling.
 *
 * The config is filled by hand so these tests do not depend on the YAML
 * loader. Throttling runs on an injected clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "config/config.h"
#include "gateway/auth.h"
#include "gateway/log.h"

static int64_t fake_now;

static int64_t
fake_clock(void)
{
  return fake_now;
}

struct fixture {
  struct config cfg;
  struct camera_conf cams[3];
};

static int
fixture_setup(void **state)
{
  struct fixture *f = xcalloc(1, sizeof(*f));

  f->cams[0].id = xstrdup("front");
  f->cams[0].smtp_user = xstrdup("front-door");
  f->cams[0].smtp_password_hash = auth_hash_password("s3cret!");
  /* A camera that only logs in by address: no user, no hash. */
  f->cams[1].id = xstrdup("garage");
  f->cams[2].id = xstrdup("yard");
  f->cams[2].smtp_user = xstrdup("yard");
  f->cams[2].smtp_password_hash = auth_hash_password("other pass");
  assert_non_null(f->cams[0].smtp_password_hash);
  assert_non_null(f->cams[2].smtp_password_hash);
  f->cfg.cameras = f->cams;
  f->cfg.ncameras = 3;
  f->cfg.smtp.auth_failures = 3;
  f->cfg.smtp.auth_lockout = 60;
  auth_cache_clear();
  fake_now = 1000000;
  auth_set_clock(fake_clock);
  *state = f;
  return 0;
}

static int
fixture_teardown(void **state)
{
  struct fixture *f = *state;

  for (size_t i = 0; i < 3; i++) {
    free(f->cams[i].id);
    free(f->cams[i].smtp_user);
    free(f->cams[i].smtp_password_hash);
  }
  free(f);
  auth_set_clock(NULL);
  auth_cache_clear();
  return 0;
}

static struct sockaddr_in
v4(const char *text)
{
  struct sockaddr_in sin;

  memset(&sin, 0, sizeof(sin));
  sin.sin_family = AF_INET;
  sin.sin_port = htons(2525);
  assert_int_equal(inet_pton(AF_INET, text, &sin.sin_addr), 1);
  return sin;
}

static struct sockaddr_in6
v6(const char *text)
{
  struct sockaddr_in6 sin6;

  memset(&sin6, 0, sizeof(sin6));
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(2525);
  assert_int_equal(inet_pton(AF_INET6, text, &sin6.sin6_addr), 1);
  return sin6;
}

#define SA(x) ((const struct sockaddr *)&(x))

static void
test_hash_is_yescrypt(void **state)
{
  char *h1 = auth_hash_password("pw");
  char *h2 = auth_hash_password("pw");

  (void)state;
  assert_non_null(h1);
  assert_non_null(h2);
  assert_memory_equal(h1, "$y$", 3);
  /* A fresh salt each time. */
  assert_string_not_equal(h1, h2);
  free(h1);
  free(h2);
}

static void
test_check_right_and_wrong(void **state)
{
  struct fixture *f = *state;

  assert_ptr_equal(auth_check(&f->cfg, "front-door", "s3cret!"), &f->cams[0]);
  assert_ptr_equal(auth_check(&f->cfg, "yard", "other pass"), &f->cams[2]);
  assert_null(auth_check(&f->cfg, "front-door", "s3cret"));
  assert_null(auth_check(&f->cfg, "front-door", "s3cret!!"));
  assert_null(auth_check(&f->cfg, "front-door", ""));
  /* Another camera's password is no good. */
  assert_null(auth_check(&f->cfg, "front-door", "other pass"));
  assert_null(auth_check(&f->cfg, "yard", "s3cret!"));
  assert_null(auth_check(&f->cfg, NULL, "s3cret!"));
  assert_null(auth_check(&f->cfg, "front-door", NULL));
}

static void
test_unknown_user_still_costs_a_crypt(void **state)
{
  struct fixture *f = *state;
  unsigned long before = auth_crypt_calls();

  assert_null(auth_check(&f->cfg, "nobody", "s3cret!"));
  assert_int_equal(auth_crypt_calls() - before, 1);
  /* The id of a camera without SMTP login is not a user name. */
  assert_null(auth_check(&f->cfg, "garage", ""));
  assert_int_equal(auth_crypt_calls() - before, 2);
}

static void
test_cache_hit_skips_crypt(void **state)
{
  struct fixture *f = *state;
  unsigned long before = auth_crypt_calls();

  assert_ptr_equal(auth_check(&f->cfg, "front-door", "s3cret!"), &f->cams[0]);
  assert_int_equal(auth_crypt_calls() - before, 1);
  for (int i = 0; i < 5; i++)
    assert_ptr_equal(auth_check(&f->cfg, "front-door", "s3cret!"),
                     &f->cams[0]);
  assert_int_equal(auth_crypt_calls() - before, 1);

  /* A hit for one camera says nothing about another. */
  assert_ptr_equal(auth_check(&f->cfg, "yard", "other pass"), &f->cams[2]);
  assert_int_equal(auth_crypt_calls() - before, 2);
}

static void
test_cache_clear_runs_crypt_again(void **state)
{
  struct fixture *f = *state;
  unsigned long before = auth_crypt_calls();

  assert_non_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  assert_non_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  assert_int_equal(auth_crypt_calls() - before, 1);
  auth_cache_clear();
  assert_ptr_equal(auth_check(&f->cfg, "front-door", "s3cret!"), &f->cams[0]);
  assert_int_equal(auth_crypt_calls() - before, 2);
  assert_non_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  assert_int_equal(auth_crypt_calls() - before, 2);
}

static void
test_wrong_password_never_cached(void **state)
{
  struct fixture *f = *state;
  unsigned long before = auth_crypt_calls();

  for (int i = 0; i < 3; i++)
    assert_null(auth_check(&f->cfg, "front-door", "guess"));
  assert_int_equal(auth_crypt_calls() - before, 3);
  /* A cached success must not leak into a near miss either. */
  assert_non_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  assert_null(auth_check(&f->cfg, "front-door", "s3cret"));
  assert_int_equal(auth_crypt_calls() - before, 5);
}

static void
test_new_hash_invalidates_cache(void **state)
{
  struct fixture *f = *state;
  unsigned long before;

  assert_non_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  /* The config now carries a new password for the same user. */
  free(f->cams[0].smtp_password_hash);
  f->cams[0].smtp_password_hash = auth_hash_password("new one");
  before = auth_crypt_calls();
  assert_null(auth_check(&f->cfg, "front-door", "s3cret!"));
  assert_int_equal(auth_crypt_calls() - before, 1);
  assert_ptr_equal(auth_check(&f->cfg, "front-door", "new one"), &f->cams[0]);
}

static void
test_throttle_locks_on_nth_failure(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in a = v4("192.0.2.1");
  struct sockaddr_in other = v4("192.0.2.2");

  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  auth_failed(&f->cfg, SA(a));
  fake_now += 1000;
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  fake_now += 1000;
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 60);
  assert_int_equal(auth_blocked(&f->cfg, SA(other)), 0);

  fake_now += 10500;
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 50);
  fake_now += 49000;
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 1);
  fake_now += 499;
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 1);
  fake_now += 1;
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);

  /* After the lockout the count starts over. */
  auth_failed(&f->cfg, SA(a));
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 60);
}

static void
test_throttle_window(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in a = v4("198.51.100.7");

  /* Failures spread wider than the window never add up to a lockout. */
  auth_failed(&f->cfg, SA(a));
  fake_now += 30000;
  auth_failed(&f->cfg, SA(a));
  fake_now += 30000;
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  fake_now += 1000;
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 60);
}

static void
test_throttle_success_clears(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in a = v4("203.0.113.9");

  auth_failed(&f->cfg, SA(a));
  auth_failed(&f->cfg, SA(a));
  auth_succeeded(SA(a));
  auth_failed(&f->cfg, SA(a));
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 60);
  auth_succeeded(SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
}

static void
test_throttle_v4_mapped(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in a = v4("192.0.2.50");
  struct sockaddr_in6 mapped = v6("::ffff:192.0.2.50");
  struct sockaddr_in6 plain = v6("2001:db8::50");
  struct sockaddr_in6 compat = v6("::192.0.2.50");

  auth_failed(&f->cfg, SA(a));
  auth_failed(&f->cfg, SA(mapped));
  auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 60);
  assert_int_equal(auth_blocked(&f->cfg, SA(mapped)), 60);
  assert_int_equal(auth_blocked(&f->cfg, SA(plain)), 0);
  assert_int_equal(auth_blocked(&f->cfg, SA(compat)), 0);
  auth_succeeded(SA(mapped));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);

  for (int i = 0; i < 3; i++)
    auth_failed(&f->cfg, SA(plain));
  assert_int_equal(auth_blocked(&f->cfg, SA(plain)), 60);
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
}

static void
test_throttle_off_and_other_families(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in a = v4("192.0.2.77");
  struct sockaddr_un un;

  memset(&un, 0, sizeof(un));
  un.sun_family = AF_UNIX;
  for (int i = 0; i < 5; i++)
    auth_failed(&f->cfg, SA(un));
  assert_int_equal(auth_blocked(&f->cfg, SA(un)), 0);
  assert_int_equal(auth_blocked(&f->cfg, NULL), 0);

  f->cfg.smtp.auth_failures = 0;
  for (int i = 0; i < 5; i++)
    auth_failed(&f->cfg, SA(a));
  assert_int_equal(auth_blocked(&f->cfg, SA(a)), 0);
}

static void
test_throttle_table_is_bounded(void **state)
{
  struct fixture *f = *state;
  struct sockaddr_in locked = v4("192.0.2.200");
  struct sockaddr_in6 s6 = v6("2001:db8:1::");

  for (int i = 0; i < 3; i++)
    auth_failed(&f->cfg, SA(locked));
  assert_int_equal(auth_blocked(&f->cfg, SA(locked)), 60);

  /* More new addresses than the table holds: the table stays bounded and
   * the flood evicts its own entries before the locked one. */
  for (unsigned i = 0; i < 10000; i++) {
    s6.sin6_addr.s6_addr[14] = (unsigned char)(i >> 8);
    s6.sin6_addr.s6_addr[15] = (unsigned char)i;
    auth_failed(&f->cfg, SA(s6));
    fake_now += 1;
  }
  assert_int_equal(auth_blocked(&f->cfg, SA(locked)), 50);
  auth_succeeded(SA(locked));
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_hash_is_yescrypt),
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, \
                                              fixture_teardown)
    T(test_check_right_and_wrong),
    T(test_unknown_user_still_costs_a_crypt),
    T(test_cache_hit_skips_crypt),
    T(test_cache_clear_runs_crypt_again),
    T(test_wrong_password_never_cached),
    T(test_new_hash_invalidates_cache),
    T(test_throttle_locks_on_nth_failure),
    T(test_throttle_window),
    T(test_throttle_success_clears),
    T(test_throttle_v4_mapped),
    T(test_throttle_off_and_other_families),
    T(test_throttle_table_is_bounded),
#undef T
  };

  log_set_level(LOGL_ERROR);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
