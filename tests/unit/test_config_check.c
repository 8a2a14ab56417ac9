/* test_config_check.c - config/config.c: what `camgate check` says beyond
 * the first error (no follow-on errors for a key already reported), its
 * warnings, the per-address session limit, and config_backend_equal()
 * that a reload uses to keep unchanged backends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

#define ERRSZ 8192

static char tmpdir[64];
static char err[ERRSZ];

static const char *
tmp_path(const char *name)
{
  static char path[4][128];
  static int next;
  char *p = path[next++ % 4];

  snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
  return p;
}

static void
write_file(const char *name, const char *text, mode_t mode)
{
  const char *path = tmp_path(name);
  FILE *f;

  unlink(path);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

static struct config *
load_named(const char *name, const char *yaml)
{
  write_file(name, yaml, 0600);
  return config_load(tmp_path(name), err, sizeof(err));
}

static struct config *
load_text(const char *yaml)
{
  return load_named("t.yaml", yaml);
}

static size_t
count_lines(const char *s)
{
  size_t n = 0;

  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* The warnings cfg gets, in buf. Returns how many. */
static int
warnings_of(const struct config *cfg, char *buf, size_t sz)
{
  FILE *f = fmemopen(buf, sz, "w");
  int n;

  assert_non_null(f);
  n = config_print_warnings(cfg, f);
  fclose(f);
  return n;
}

static int
setup(void **state)
{
  size_t n;

  (void)state;
  n = (size_t)snprintf(tmpdir, sizeof(tmpdir),
                       "/tmp/camgate-test-config-check-");
  memset(tmpdir + n, 'X', 6);
  tmpdir[n + 6] = '\0';
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  write_file("cert.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  write_file("wide.key", "-----BEGIN PRIVATE KEY-----\n", 0644);
  return 0;
}

static int
teardown(void **state)
{
  static const char *const names[] = {"cert.pem", "wide.key", "t.yaml",
                                      "a.yaml", "b.yaml"};

  (void)state;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    unlink(tmp_path(names[i]));
  return rmdir(tmpdir);
}

static void
test_bad_key_has_no_follow_on(void **state)
{
  char yaml[512];
  struct config *cfg;

  (void)state;
  snprintf(yaml, sizeof(yaml), "tls:\n  cert: %s\n  key: %s\n",
           tmp_path("cert.pem"), tmp_path("wide.key"));
  cfg = load_text(yaml);
  assert_null(cfg);
  assert_non_null(strstr(err, "tls.key: expected a file only its owner "
                              "can read (chmod 600), found mode 0644"));
  assert_null(strstr(err, "with tls.cert"));
  assert_int_equal(count_lines(err), 1);
}

static void
test_missing_hash_file_has_no_follow_on(void **state)
{
  struct config *cfg;

  (void)state;
  cfg = load_text("cameras:\n"
                  "  - id: a\n"
                  "    smtp:\n"
                  "      user: a\n"
                  "      password_hash_file: /nonexistent/hash\n");
  assert_null(cfg);
  assert_non_null(strstr(err, "password_hash_file: expected a readable "
                              "secret file"));
  assert_null(strstr(err, "together"));
  assert_int_equal(count_lines(err), 1);
  /* A hash that is simply missing still gets the error. */
  cfg = load_text("cameras:\n"
                  "  - id: a\n"
                  "    smtp:\n"
                  "      user: a\n");
  assert_null(cfg);
  assert_non_null(strstr(err, "expected user and password_hash together"));
}

static void
test_warn_empty(void **state)
{
  char out[2048];
  struct config *cfg = load_text("log:\n  level: info\n");

  (void)state;
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 3);
  assert_int_equal(count_lines(out), 3);
  assert_non_null(strstr(out, "warning: "));
  assert_non_null(strstr(out, "cameras: none configured"));
  assert_non_null(strstr(out, "backends: none configured"));
  assert_non_null(strstr(out, "rules: none configured"));
  config_unref(cfg);
}

static const char complete[] =
  "cameras:\n"
  "  - id: shed\n"
  "    allow_from: [%s]\n"
  "%s"
  "backends:\n"
  "  - name: ha\n"
  "    type: mqtt\n"
  "rules:\n"
  "  - backends: [ha]\n"
  "    match: {camera: %s}\n";

static struct config *
load_complete(const char *allow, const char *extra_cam, const char *glob)
{
  char yaml[1024];

  struct config *cfg;

  snprintf(yaml, sizeof(yaml), complete, allow, extra_cam, glob);
  cfg = load_text(yaml);
  if (cfg == NULL)
    fail_msg("%s", err);
  return cfg;
}

static void
test_warn_allow_any(void **state)
{
  char out[2048];
  struct config *cfg;

  (void)state;
  cfg = load_complete("192.0.2.0/24", "", "shed");
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 0);
  config_unref(cfg);
  cfg = load_complete("0.0.0.0/0, \"::/0\"", "", "shed");
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 2);
  assert_non_null(strstr(out, "warning: "));
  assert_non_null(strstr(out, "cameras[0].allow_from[0]: 0.0.0.0/0 lets "
                              "any address"));
  assert_non_null(strstr(out, "cameras[0].allow_from[1]: ::/0 lets"));
  config_unref(cfg);
}

static void
test_warn_rule_cameras(void **state)
{
  static const char nvr[] =
    "  - id: nvr\n"
    "    allow_from: [192.0.2.9/32]\n"
    "    channel: {from: subject, pattern: 'CH([0-9]+)'}\n";
  char out[2048];
  struct config *cfg;

  (void)state;
  cfg = load_complete("192.0.2.1/32", "", "\"sh*\"");
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 0);
  config_unref(cfg);
  cfg = load_complete("192.0.2.1/32", "", "[garage, \"front*\"]");
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 1);
  assert_non_null(strstr(out, "warning: "));
  assert_non_null(strstr(out, "rules[0].match.camera: rule "));
  assert_non_null(strstr(out, "matches no configured camera id"));
  config_unref(cfg);
  /* An NVR's channels become ids no config lists. */
  cfg = load_complete("192.0.2.1/32", nvr, "\"nvr-*\"");
  assert_non_null(cfg);
  assert_int_equal(warnings_of(cfg, out, sizeof(out)), 0);
  config_unref(cfg);
}

static void
test_sessions_per_address(void **state)
{
  struct config *cfg;

  (void)state;
  cfg = load_text("log:\n  level: info\n");
  assert_non_null(cfg);
  assert_int_equal(cfg->smtp.max_sessions_per_address, 20);
  config_unref(cfg);
  cfg = load_text("smtp:\n  max_sessions: 8\n");
  assert_non_null(cfg);
  assert_int_equal(cfg->smtp.max_sessions_per_address, 8);
  config_unref(cfg);
  cfg = load_text("smtp:\n  max_sessions_per_address: 3\n");
  assert_non_null(cfg);
  assert_int_equal(cfg->smtp.max_sessions_per_address, 3);
  config_unref(cfg);
  cfg = load_text("smtp:\n"
                  "  max_sessions: 10\n"
                  "  max_sessions_per_address: 11\n");
  assert_null(cfg);
  assert_non_null(strstr(err, ":3:29: smtp.max_sessions_per_address: "
                              "expected an integer from 1 to max_sessions "
                              "(10), found 11"));
  cfg = load_text("smtp:\n  max_sessions_per_address: 0\n");
  assert_null(cfg);
  assert_non_null(strstr(err, "smtp.max_sessions_per_address: "));
}

static const char backends_fmt[] =
  "backends:\n"
  "  - name: ha\n"
  "    type: mqtt\n"
  "    password: %s\n"
  "    topic_prefix: %s\n"
  "  - name: phone\n"
  "    type: ntfy\n"
  "    url: https://ntfy.example.net\n"
  "    topic: %s\n"
  "    tags: [a, b]\n"
  "    defaults: {title: \"{camera}\", cooldown: %s}\n";

static struct config *
load_backends(const char *name, const char *pass, const char *prefix,
              const char *topic, const char *cooldown)
{
  char yaml[1024];

  snprintf(yaml, sizeof(yaml), backends_fmt, pass, prefix, topic,
           cooldown);
  return load_named(name, yaml);
}

static void
test_backend_equal(void **state)
{
  struct config *a = load_backends("a.yaml", "p1", "cg", "t", "1m");
  struct config *b;

  (void)state;
  assert_non_null(a);
  b = load_backends("b.yaml", "p1", "cg", "t", "1m");
  assert_non_null(b);
  assert_true(config_backend_equal(&a->backends[0], &b->backends[0]));
  assert_true(config_backend_equal(&a->backends[1], &b->backends[1]));
  assert_false(config_backend_equal(&a->backends[0], &b->backends[1]));
  config_unref(b);
  /* A secret alone makes a difference. */
  b = load_backends("b.yaml", "p2", "cg", "t", "1m");
  assert_non_null(b);
  assert_false(config_backend_equal(&a->backends[0], &b->backends[0]));
  assert_true(config_backend_equal(&a->backends[1], &b->backends[1]));
  config_unref(b);
  b = load_backends("b.yaml", "p1", "cg2", "t2", "1m");
  assert_non_null(b);
  assert_false(config_backend_equal(&a->backends[0], &b->backends[0]));
  assert_false(config_backend_equal(&a->backends[1], &b->backends[1]));
  config_unref(b);
  /* A nested mapping: the backend's defaults. */
  b = load_backends("b.yaml", "p1", "cg", "t", "2m");
  assert_non_null(b);
  assert_true(config_backend_equal(&a->backends[0], &b->backends[0]));
  assert_false(config_backend_equal(&a->backends[1], &b->backends[1]));
  config_unref(b);
  config_unref(a);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bad_key_has_no_follow_on),
    cmocka_unit_test(test_missing_hash_file_has_no_follow_on),
    cmocka_unit_test(test_warn_empty),
    cmocka_unit_test(test_warn_allow_any),
    cmocka_unit_test(test_warn_rule_cameras),
    cmocka_unit_test(test_sessions_per_address),
    cmocka_unit_test(test_backend_equal),
  };

  return cmocka_run_group_tests(tests, setup, teardown);
}
