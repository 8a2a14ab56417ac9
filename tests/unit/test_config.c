/* test_config.c - config/config.c: loading, defaults, every error with its
 * file:line:col, secrets, lookups and the summary. Configs are written to
 * a private temporary directory so secret files can carry mode 0600. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

#ifndef TESTS_DIR
#define TESTS_DIR "tests"
#endif

#define ERRSZ 8192

static char tmpdir[64];
static char paths[16][128];
static size_t npaths;
static char err[ERRSZ];

/* Writes name in the temporary directory with mode; returns its path. */
static const char *
write_file(const char *name, const char *text, mode_t mode)
{
  char *path = NULL;
  FILE *f;

  for (size_t i = 0; i < npaths; i++) {
    const char *slash = strrchr(paths[i], '/');

    if (strcmp(slash + 1, name) == 0)
      path = paths[i];
  }
  if (path == NULL) {
    assert_true(npaths < sizeof(paths) / sizeof(paths[0]));
    path = paths[npaths++];
    snprintf(path, sizeof(paths[0]), "%s/%s", tmpdir, name);
  }
  unlink(path);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
  return path;
}

static const char *
file_path(const char *name)
{
  static char path[128];

  snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
  return path;
}

static struct config *
load_text(const char *yaml)
{
  const char *path = write_file("t.yaml", yaml, 0600);

  return config_load(path, err, sizeof(err));
}

/* Asserts that yaml fails with an error line starting "FILE:L:C: KEY: " and
 * containing frag. */
static void
expect_error(const char *yaml, int line, int col, const char *key,
             const char *frag)
{
  char prefix[256];
  struct config *cfg = load_text(yaml);
  const char *at;

  if (cfg != NULL)
    config_unref(cfg);
  assert_null(cfg);
  snprintf(prefix, sizeof(prefix), "%s:%d:%d: %s: ", file_path("t.yaml"),
           line, col, key);
  at = strstr(err, prefix);
  if (at == NULL)
    fail_msg("want \"%s\" in:\n%s", prefix, err);
  if (frag && strstr(at, frag) == NULL)
    fail_msg("want \"%s\" after \"%s\" in:\n%s", frag, prefix, err);
}

static size_t
count_lines(const char *s)
{
  size_t n = 0;

  for (; *s; s++)
    n += *s == '\n';
  return n;
}

static int
setup(void **state)
{
  size_t n;

  (void)state;
  /* mkdtemp(3) wants the name to end in six X. */
  n = (size_t)snprintf(tmpdir, sizeof(tmpdir), "/tmp/camgate-test-config-");
  memset(tmpdir + n, 'X', 6);
  tmpdir[n + 6] = '\0';
  if (mkdtemp(tmpdir) == NULL)
    return -1;
  write_file("cert.pem", "-----BEGIN CERTIFICATE-----\n", 0644);
  write_file("key.pem", "-----BEGIN PRIVATE KEY-----\n", 0600);
  write_file("loose.key", "-----BEGIN PRIVATE KEY-----\n", 0640);
  write_file("hash", "$y$j9T$salt$hashfromfile\n", 0600);
  write_file("loose.hash", "$y$j9T$salt$hashfromfile\n", 0644);
  write_file("mqtt.pass", "s3cret-from-file\n", 0400);
  return 0;
}

static int
teardown(void **state)
{
  (void)state;
  for (size_t i = 0; i < npaths; i++)
    unlink(paths[i]);
  return rmdir(tmpdir);
}

/* ---- a full config ---- */

static const char full_fmt[] =
  "log:\n"
  "  level: debug\n"
  "spool:\n"
  "  path: /var/lib/camgate\n"
  "  retention: 2d\n"
  "shutdown_grace: 20\n"
  "tls:\n"
  "  cert: %s/cert.pem\n"
  "  key: %s/key.pem\n"
  "  min_version: \"1.0\"\n"
  "  ciphers: HIGH:!aNULL\n"
  "smtp:\n"
  "  listen: \"[::1]:2526\"\n"
  "  listen_tls: 0.0.0.0:4650\n"
  "  hostname: gw.example.net\n"
  "  max_size: 16M\n"
  "  max_sessions: 50\n"
  "  idle_timeout: 2m\n"
  "  session_timeout: 1h\n"
  "  max_recipients: 10\n"
  "  auth_failures: 3\n"
  "  auth_lockout: 15m\n"
  "  kinds:\n"
  "    - pattern: 'Person|Human'\n"
  "      in: subject\n"
  "      kind: person\n"
  "      state: start\n"
  "    - pattern: 'car'\n"
  "      kind: vehicle\n"
  "cameras:\n"
  "  - id: shed\n"
  "    name: Garden shed\n"
  "    smtp:\n"
  "      user: cam-shed\n"
  "      password_hash: \"$y$j9T$abc$def\"\n"
  "    allow_from: [192.0.2.10, 192.0.2.0/24, \"2001:db8::/32\"]\n"
  "    kinds: [motion, person]\n"
  "  - id: nvr.1\n"
  "    smtp:\n"
  "      user: nvr\n"
  "      password_hash_file: %s/hash\n"
  "    channel:\n"
  "      from: body\n"
  "      pattern: 'CAMERA NAME\\(NUM\\):\\s*[^(]*\\(([^)]+)\\)'\n"
  "      name: \"NVR {1}\"\n"
  "backends:\n"
  "  - name: ha\n"
  "    type: mqtt\n"
  "    host: broker.lan\n"
  "    port: 8883\n"
  "    user: camgate\n"
  "    password: hunter2-inline\n"
  "    client_id: gw1\n"
  "    keepalive: 1m\n"
  "    tls: yes\n"
  "    ca_file: %s/cert.pem\n"
  "    tls_insecure: on\n"
  "    topic_prefix: site/a\n"
  "    discovery: off\n"
  "    discovery_prefix: ha\n"
  "    hold: 10s\n"
  "    start_timeout: 2m\n"
  "    retry_initial: 2s\n"
  "    retry_max: 1h\n"
  "    max_attempts: 7\n"
  "  - name: second\n"
  "    type: mqtt\n"
  "    password_file: %s/mqtt.pass\n"
  "rules:\n"
  "  - name: everything to HA\n"
  "    match:\n"
  "      camera: \"*\"\n"
  "      kind: [motion, person]\n"
  "      source: smtp\n"
  "      state: start\n"
  "    backends: [ha, second]\n"
  "    continue: true\n"
  "  - match:\n"
  "      camera: [nvr.1-*]\n"
  "    drop: true\n";

static struct config *
load_full(void)
{
  char yaml[4096];
  struct config *cfg;

  snprintf(yaml, sizeof(yaml), full_fmt, tmpdir, tmpdir, tmpdir, tmpdir,
           tmpdir);
  cfg = load_text(yaml);
  if (cfg == NULL)
    fail_msg("full config failed:\n%s", err);
  return cfg;
}

static void
test_full_globals(void **state)
{
  struct config *cfg = load_full();
  char path[128];

  (void)state;
  assert_int_equal(cfg->refs, 1);
  assert_string_equal(cfg->path, file_path("t.yaml"));
  assert_string_equal(cfg->log_level, "debug");
  assert_string_equal(cfg->spool_path, "/var/lib/camgate");
  assert_int_equal(cfg->retention, 2 * 86400);
  assert_int_equal(cfg->shutdown_grace, 20);
  snprintf(path, sizeof(path), "%s/cert.pem", tmpdir);
  assert_string_equal(cfg->tls.cert, path);
  snprintf(path, sizeof(path), "%s/key.pem", tmpdir);
  assert_string_equal(cfg->tls.key, path);
  assert_string_equal(cfg->tls.min_version, "1.0");
  assert_string_equal(cfg->tls.ciphers, "HIGH:!aNULL");
  config_unref(cfg);
}

static void
test_full_smtp(void **state)
{
  struct config *cfg = load_full();
  const struct smtp_conf *s = &cfg->smtp;

  (void)state;
  assert_string_equal(s->listen.host, "::1");
  assert_int_equal(s->listen.port, 2526);
  assert_string_equal(s->listen_tls.host, "0.0.0.0");
  assert_int_equal(s->listen_tls.port, 4650);
  assert_string_equal(s->hostname, "gw.example.net");
  assert_int_equal(s->max_size, 16 * 1024 * 1024);
  assert_int_equal(s->max_sessions, 50);
  assert_int_equal(s->idle_timeout, 120);
  assert_int_equal(s->session_timeout, 3600);
  assert_int_equal(s->max_recipients, 10);
  assert_int_equal(s->auth_failures, 3);
  assert_int_equal(s->auth_lockout, 900);
  assert_int_equal(s->nkinds, 2);
  assert_int_equal(s->kinds[0].field, KIND_SUBJECT);
  assert_string_equal(s->kinds[0].kind, "person");
  assert_string_equal(s->kinds[0].state, "start");
  assert_true(g_regex_match(s->kinds[0].re, "a HUMAN was seen", 0, NULL));
  assert_false(g_regex_match(s->kinds[0].re, "a cat", 0, NULL));
  assert_int_equal(s->kinds[1].field, KIND_ANY);
  assert_null(s->kinds[1].state);
  assert_true(g_regex_match(s->kinds[1].re, "CAR detected", 0, NULL));
  config_unref(cfg);
}

static void
test_full_cameras(void **state)
{
  struct config *cfg = load_full();
  const struct camera_conf *c, *n;
  GMatchInfo *mi = NULL;
  char *group;

  (void)state;
  assert_int_equal(cfg->ncameras, 2);
  c = &cfg->cameras[0];
  assert_string_equal(c->id, "shed");
  assert_string_equal(c->name, "Garden shed");
  assert_string_equal(c->smtp_user, "cam-shed");
  assert_string_equal(c->smtp_password_hash, "$y$j9T$abc$def");
  assert_int_equal(c->nallow, 3);
  assert_int_equal(c->allow[0].family, AF_INET);
  assert_int_equal(c->allow[0].prefix, 32);
  assert_int_equal(c->allow[1].prefix, 24);
  assert_int_equal(c->allow[2].family, AF_INET6);
  assert_int_equal(c->allow[2].prefix, 32);
  assert_int_equal(c->channel_from, CHANNEL_NONE);
  assert_null(c->channel_re);
  assert_int_equal(c->nkinds, 2);
  assert_string_equal(c->kinds[0], "motion");
  assert_string_equal(c->kinds[1], "person");

  n = &cfg->cameras[1];
  assert_string_equal(n->id, "nvr.1");
  assert_string_equal(n->name, "nvr.1");
  assert_string_equal(n->smtp_password_hash, "$y$j9T$salt$hashfromfile");
  assert_int_equal(n->nallow, 0);
  assert_int_equal(n->channel_from, CHANNEL_BODY);
  assert_string_equal(n->channel_id, "{camera}-{1}");
  assert_string_equal(n->channel_name, "NVR {1}");
  assert_true(g_regex_match(n->channel_re,
                            "CAMERA NAME(NUM): Front (D3)", 0, &mi));
  group = g_match_info_fetch(mi, 1);
  assert_string_equal(group, "D3");
  g_free(group);
  g_match_info_free(mi);

  assert_ptr_equal(config_camera_by_user(cfg, "nvr"), n);
  assert_ptr_equal(config_camera_by_id(cfg, "shed"), c);
  assert_null(config_camera_by_id(cfg, "nope"));
  assert_null(config_camera_by_user(cfg, "cam-shed2"));
  config_unref(cfg);
}

static void
test_full_backends(void **state)
{
  struct config *cfg = load_full();
  const struct backend_conf *b;
  const struct mqtt_conf *m;
  char path[128];

  (void)state;
  assert_int_equal(cfg->nbackends, 2);
  b = config_backend(cfg, "ha");
  assert_ptr_equal(b, &cfg->backends[0]);
  m = &b->u.mqtt;
  assert_int_equal(b->type, BACKEND_MQTT);
  assert_string_equal(m->host, "broker.lan");
  assert_int_equal(m->port, 8883);
  assert_string_equal(m->user, "camgate");
  assert_string_equal(m->password, "hunter2-inline");
  assert_string_equal(m->client_id, "gw1");
  assert_int_equal(m->keepalive, 60);
  assert_int_equal(m->tls, 1);
  snprintf(path, sizeof(path), "%s/cert.pem", tmpdir);
  assert_string_equal(m->ca_file, path);
  assert_int_equal(m->tls_insecure, 1);
  assert_string_equal(m->topic_prefix, "site/a");
  assert_int_equal(m->discovery, 0);
  assert_string_equal(m->discovery_prefix, "ha");
  assert_int_equal(m->hold, 10);
  assert_int_equal(m->start_timeout, 120);
  assert_int_equal(b->retry_initial, 2);
  assert_int_equal(b->retry_max, 3600);
  assert_int_equal(b->max_attempts, 7);
  assert_string_equal(cfg->backends[1].u.mqtt.password, "s3cret-from-file");
  assert_null(config_backend(cfg, "nope"));
  config_unref(cfg);
}

static void
test_full_rules(void **state)
{
  struct config *cfg = load_full();
  const struct rule_conf *r;

  (void)state;
  assert_int_equal(cfg->nrules, 2);
  r = &cfg->rules[0];
  assert_string_equal(r->name, "everything to HA");
  assert_int_equal(r->camera.n, 1);
  assert_string_equal(r->camera.globs[0], "*");
  assert_int_equal(r->kind.n, 2);
  assert_string_equal(r->kind.globs[1], "person");
  assert_int_equal(r->source.n, 1);
  assert_string_equal(r->source.globs[0], "smtp");
  assert_string_equal(r->state.globs[0], "start");
  assert_int_equal(r->nbackends, 2);
  assert_string_equal(r->backends[0], "ha");
  assert_string_equal(r->backends[1], "second");
  assert_int_equal(r->cont, 1);
  assert_int_equal(r->drop, 0);
  r = &cfg->rules[1];
  assert_string_equal(r->name, "rule 2");
  assert_string_equal(r->camera.globs[0], "nvr.1-*");
  assert_int_equal(r->kind.n, 0);
  assert_int_equal(r->nbackends, 0);
  assert_int_equal(r->drop, 1);
  assert_int_equal(r->cont, 0);
  config_unref(cfg);
}

static void
test_refcount(void **state)
{
  struct config *cfg = load_full();

  (void)state;
  assert_ptr_equal(config_ref(cfg), cfg);
  assert_int_equal(cfg->refs, 2);
  config_unref(cfg);
  assert_int_equal(cfg->refs, 1);
  config_unref(cfg);
  config_unref(NULL);
  assert_null(config_ref(NULL));
}

/* ---- defaults ---- */

static void
test_defaults_empty(void **state)
{
  struct config *cfg = load_text("# nothing but a comment\n");
  char host[256];

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", err);
  assert_string_equal(err, "");
  assert_string_equal(cfg->log_level, "info");
  assert_string_equal(cfg->spool_path, "./var");
  assert_int_equal(cfg->retention, 7 * 86400);
  assert_int_equal(cfg->shutdown_grace, 10);
  assert_null(cfg->tls.cert);
  assert_null(cfg->tls.key);
  assert_string_equal(cfg->tls.min_version, "1.2");
  assert_null(cfg->tls.ciphers);
  assert_string_equal(cfg->smtp.listen.host, "127.0.0.1");
  assert_int_equal(cfg->smtp.listen.port, 2525);
  assert_null(cfg->smtp.listen_tls.host);
  assert_int_equal(gethostname(host, sizeof(host)), 0);
  assert_string_equal(cfg->smtp.hostname, host);
  assert_int_equal(cfg->smtp.max_size, 32 * 1024 * 1024);
  assert_int_equal(cfg->smtp.max_sessions, 200);
  assert_int_equal(cfg->smtp.idle_timeout, 300);
  assert_int_equal(cfg->smtp.session_timeout, 1800);
  assert_int_equal(cfg->smtp.max_recipients, 100);
  assert_int_equal(cfg->smtp.auth_failures, 5);
  assert_int_equal(cfg->smtp.auth_lockout, 300);
  assert_int_equal(cfg->smtp.nkinds, 0);
  assert_int_equal(cfg->ncameras, 0);
  assert_int_equal(cfg->nbackends, 0);
  assert_int_equal(cfg->nrules, 0);
  config_unref(cfg);
}

static void
test_defaults_items(void **state)
{
  struct config *cfg = load_text(
    "smtp:\n"
    "cameras:\n"
    "  - id: cam\n"
    "    channel: {from: subject, pattern: 'ch(\\d+)'}\n"
    "backends:\n"
    "  - {name: b, type: mqtt}\n"
    "rules:\n"
    "  - backends: [b]\n");
  const struct mqtt_conf *m;

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", err);
  assert_int_equal(cfg->smtp.listen.port, 2525);
  assert_string_equal(cfg->cameras[0].name, "cam");
  assert_null(cfg->cameras[0].smtp_user);
  assert_int_equal(cfg->cameras[0].channel_from, CHANNEL_SUBJECT);
  assert_string_equal(cfg->cameras[0].channel_id, "{camera}-{1}");
  assert_string_equal(cfg->cameras[0].channel_name, "{name} {1}");
  m = &cfg->backends[0].u.mqtt;
  assert_string_equal(m->host, "127.0.0.1");
  assert_int_equal(m->port, 1883);
  assert_null(m->user);
  assert_null(m->password);
  assert_string_equal(m->client_id, "camgate");
  assert_int_equal(m->keepalive, 30);
  assert_int_equal(m->tls, 0);
  assert_null(m->ca_file);
  assert_int_equal(m->tls_insecure, 0);
  assert_string_equal(m->topic_prefix, "camgate");
  assert_int_equal(m->discovery, 1);
  assert_string_equal(m->discovery_prefix, "homeassistant");
  assert_int_equal(m->hold, 30);
  assert_int_equal(m->start_timeout, 300);
  assert_int_equal(cfg->backends[0].retry_initial, 5);
  assert_int_equal(cfg->backends[0].retry_max, 600);
  assert_int_equal(cfg->backends[0].max_attempts, 0);
  assert_string_equal(cfg->rules[0].name, "rule 1");
  assert_int_equal(cfg->rules[0].camera.n, 0);
  assert_int_equal(cfg->rules[0].cont, 0);
  assert_int_equal(cfg->rules[0].drop, 0);
  config_unref(cfg);
}

/* ---- errors, each at its file:line:col ---- */

static void
test_err_unknown_key(void **state)
{
  (void)state;
  expect_error("smtp:\n"
               "  listen: 127.0.0.1:2525\n"
               "  max_sesions: 5\n",
               3, 3, "smtp.max_sesions", "unknown key \"max_sesions\"");
  expect_error("backends:\n"
               "  - name: x\n"
               "    type: mqtt\n"
               "    hots: a\n",
               4, 5, "backends[0].hots", "expected one of name, type");
  /* _file is for secrets only. */
  expect_error("cameras:\n"
               "  - id: a\n"
               "    name_file: /etc/passwd\n",
               3, 5, "cameras[0].name_file", "unknown key");
}

static void
test_err_wrong_type(void **state)
{
  (void)state;
  expect_error("smtp:\n"
               "  max_sessions: [1, 2]\n",
               2, 17, "smtp.max_sessions", "expected an integer, found a list");
  expect_error("cameras:\n"
               "  id: shed\n",
               2, 3, "cameras", "expected a list, found a mapping");
  expect_error("backends:\n"
               "  - name: b\n"
               "    type: mqtt\n"
               "    tls: maybe\n",
               4, 10, "backends[0].tls", "expected true or false, found "
               "\"maybe\"");
  expect_error("- a\n", 1, 1, "(top)", "expected a mapping, found a list");
}

static void
test_err_bounds(void **state)
{
  (void)state;
  expect_error("smtp:\n"
               "  max_sessions: 0\n",
               2, 17, "smtp.max_sessions",
               "expected an integer from 1 to 100000, found \"0\"");
  expect_error("smtp:\n"
               "  max_size: 2G\n",
               2, 13, "smtp.max_size",
               "expected a size from 1K to 1G");
  expect_error("spool:\n"
               "  retention: 59s\n",
               2, 14, "spool.retention",
               "expected a duration from 1m to 3650d");
  expect_error("backends:\n"
               "  - {name: b, type: mqtt, port: 65536}\n",
               2, 33, "backends[0].port", "from 1 to 65535");
}

static void
test_err_duration_size_endpoint(void **state)
{
  (void)state;
  expect_error("shutdown_grace: 10x\n", 1, 17, "shutdown_grace",
               "expected a duration");
  expect_error("smtp:\n"
               "  max_size: 12KB\n",
               2, 13, "smtp.max_size", "found \"12KB\"");
  expect_error("smtp:\n"
               "  listen: 127.0.0.1\n",
               2, 11, "smtp.listen", "expected host:port");
  expect_error("smtp:\n"
               "  listen: \"::1:25\"\n",
               2, 11, "smtp.listen", "[::1]:2525");
  expect_error("smtp:\n"
               "  listen: localhost:0\n",
               2, 11, "smtp.listen", "port from 1 to 65535");
}

static void
test_err_cidr(void **state)
{
  (void)state;
  expect_error("cameras:\n"
               "  - id: a\n"
               "    allow_from: [192.0.2.10, 300.1.2.3]\n",
               3, 30, "cameras[0].allow_from[1]",
               "expected an address or network");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    allow_from:\n"
               "      - 192.0.2.1/24\n",
               4, 9, "cameras[0].allow_from[0]", "no bits set past");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    allow_from: 10.0.0.0/33\n",
               3, 17, "cameras[0].allow_from", "found \"10.0.0.0/33\"");
}

static void
test_err_regex(void **state)
{
  (void)state;
  expect_error("smtp:\n"
               "  kinds:\n"
               "    - pattern: '(abc'\n"
               "      kind: x\n",
               3, 16, "smtp.kinds[0].pattern",
               "expected a valid regular expression, found \"(abc\" (at "
               "char 4: missing terminating )");
  expect_error("cameras:\n"
               "  - id: nvr\n"
               "    channel:\n"
               "      from: body\n"
               "      pattern: 'CAMERA \\d+'\n",
               5, 16, "cameras[0].channel.pattern",
               "expected a regular expression with a capture group");
  expect_error("cameras:\n"
               "  - id: nvr\n"
               "    channel:\n"
               "      from: fax\n"
               "      pattern: '(x)'\n",
               4, 13, "cameras[0].channel.from",
               "expected a known channel source (rcpt, sender, subject, "
               "body), found \"fax\"");
}

static void
test_err_duplicates(void **state)
{
  (void)state;
  expect_error("cameras:\n"
               "  - id: shed\n"
               "  - id: gate\n"
               "  - id: shed\n",
               4, 9, "cameras[2].id",
               "expected a unique camera id, found \"shed\" again (first "
               "at line 2)");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    smtp: {user: u, password_hash: $1$x$y}\n"
               "  - id: b\n"
               "    smtp: {user: u, password_hash: $1$x$y}\n",
               5, 18, "cameras[1].smtp.user", "unique SMTP user");
  expect_error("backends:\n"
               "  - {name: b, type: mqtt}\n"
               "  - {name: b, type: mqtt}\n",
               3, 12, "backends[1].name", "unique backend name");
  expect_error("log:\n"
               "  level: info\n"
               "  level: debug\n",
               3, 3, "log.level", "found it again");
}

static void
test_err_rule_backend(void **state)
{
  (void)state;
  expect_error("backends:\n"
               "  - {name: ha, type: mqtt}\n"
               "rules:\n"
               "  - backends: [ha, hx]\n"
               "  - backends:\n"
               "      - ha\n"
               "      - gone\n",
               4, 20, "rules[0].backends[1]",
               "expected the name of a backend, found \"hx\"");
  assert_non_null(strstr(err, ":7:9: rules[1].backends[1]: "));
  assert_int_equal(count_lines(err), 2);
  expect_error("backends:\n"
               "  - {name: ha, type: mqtt}\n"
               "rules:\n"
               "  - backends: [ha]\n"
               "    drop: true\n",
               5, 11, "rules[0].drop", "found both");
  expect_error("rules:\n"
               "  - name: nowhere\n",
               2, 5, "rules[0].backends", "expected backends or drop");
}

static void
test_err_tls(void **state)
{
  char yaml[512];

  (void)state;
  expect_error("smtp:\n"
               "  listen_tls: 127.0.0.1:4650\n",
               2, 15, "smtp.listen_tls", "expected tls.cert and tls.key");
  snprintf(yaml, sizeof(yaml), "tls:\n  cert: %s/cert.pem\n  key: %s\n",
           tmpdir, file_path("loose.key"));
  expect_error(yaml, 3, 8, "tls.key",
               "expected a file only its owner can read (chmod 600), found "
               "mode 0640");
  snprintf(yaml, sizeof(yaml), "tls:\n  cert: %s/cert.pem\n", tmpdir);
  expect_error(yaml, 2, 3, "tls.key", "expected tls.key with tls.cert");
  expect_error("tls:\n  cert: /nonexistent/cert.pem\n  key: x\n", 2, 9,
               "tls.cert", "expected a readable file");
  expect_error("tls:\n  min_version: \"1.4\"\n", 2, 16, "tls.min_version",
               "expected a known TLS version (1.0, 1.1, 1.2, 1.3)");
}

static void
test_err_secret_file(void **state)
{
  char yaml[512];

  (void)state;
  snprintf(yaml, sizeof(yaml),
           "cameras:\n"
           "  - id: a\n"
           "    smtp:\n"
           "      user: a\n"
           "      password_hash_file: %s\n", file_path("loose.hash"));
  expect_error(yaml, 5, 27, "cameras[0].smtp.password_hash_file",
               "expected a file only its owner can read (chmod 600), found "
               "mode 0644");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    smtp:\n"
               "      user: a\n"
               "      password_hash_file: /nonexistent/hash\n",
               5, 27, "cameras[0].smtp.password_hash_file",
               "expected a readable secret file");
  snprintf(yaml, sizeof(yaml),
           "backends:\n"
           "  - name: b\n"
           "    type: mqtt\n"
           "    password: inline-pass\n"
           "    password_file: %s\n", file_path("mqtt.pass"));
  expect_error(yaml, 5, 5, "backends[0].password_file",
               "expected either password or password_file, found both");
  assert_null(strstr(err, "inline-pass"));
  assert_null(strstr(err, "s3cret"));
}

static void
test_err_secret_not_echoed(void **state)
{
  (void)state;
  expect_error("cameras:\n"
               "  - id: a\n"
               "    smtp:\n"
               "      user: a\n"
               "      password_hash: plain-text-oops\n",
               5, 22, "cameras[0].smtp.password_hash",
               "expected a crypt(3) hash");
  assert_null(strstr(err, "plain-text-oops"));
  expect_error("cameras:\n"
               "  - id: a\n"
               "    smtp:\n"
               "      user: a\n",
               4, 7, "cameras[0].smtp.password_hash",
               "expected user and password_hash together");
}

static void
test_err_backend_type(void **state)
{
  (void)state;
  expect_error("backends:\n"
               "  - name: k\n"
               "    type: kafka\n"
               "    brokers: x\n",
               3, 11, "backends[0].type",
               "expected a known backend type (mqtt, email, ntfy), "
               "found \"kafka\"");
  /* The keys of an unknown type are not reported on top of it. */
  assert_int_equal(count_lines(err), 1);
  expect_error("backends:\n"
               "  - name: k\n",
               2, 5, "backends[0].type", "(required), found nothing");
  expect_error("backends:\n"
               "  - {name: k, type: mqtt, topic_prefix: \"a/#\"}\n",
               2, 41, "backends[0].topic_prefix", "without '+', '#'");
  expect_error("backends:\n"
               "  - {name: k, type: mqtt, retry_initial: 1h, "
               "retry_max: 1m}\n",
               2, 57, "backends[0].retry_max",
               "expected at least retry_initial (3600s), found 60s");
}

static void
test_err_values(void **state)
{
  (void)state;
  expect_error("cameras:\n"
               "  - name: no id\n",
               2, 5, "cameras[0].id", "expected a string (required)");
  expect_error("cameras:\n"
               "  - id: \"bad id\"\n",
               2, 9, "cameras[0].id", "expected 1 to 64 of A-Z");
  expect_error("cameras:\n"
               "  - id: camgate\n",
               2, 9, "cameras[0].id",
               "expected an id other than \"camgate\"");
  expect_error("cameras:\n"
               "  - id: a\n"
               "    kinds: [Motion]\n",
               3, 13, "cameras[0].kinds[0]", "a-z 0-9 _");
  expect_error("log:\n"
               "  level: loud\n",
               2, 10, "log.level",
               "expected a known log level (error, warn, info, debug), "
               "found \"loud\"");
  expect_error("smtp:\n"
               "  kinds:\n"
               "    - {pattern: x, kind: y, in: header}\n",
               3, 33, "smtp.kinds[0].in", "one of subject, body, any");
}

static void
test_err_syntax(void **state)
{
  (void)state;
  expect_error("smtp:\n"
               "  listen: 127.0.0.1:2525\n"
               " max_size: 1M\n",
               3, 2, "yaml", "expected valid YAML, found");
  expect_error("cameras: [a, b\n", 2, 1, "yaml", "expected valid YAML");
  expect_error("log: {level: info}\n---\nlog: {}\n", 3, 1, "yaml",
               "expected one document");
}

static void
test_err_many(void **state)
{
  (void)state;
  expect_error("log:\n"
               "  level: loud\n"
               "smtp:\n"
               "  max_sessions: -1\n"
               "  bogus: 1\n"
               "cameras:\n"
               "  - id: a\n"
               "  - id: a\n"
               "rules:\n"
               "  - backends: [nope]\n",
               2, 10, "log.level", NULL);
  assert_non_null(strstr(err, ":4:17: smtp.max_sessions: "));
  assert_non_null(strstr(err, ":5:3: smtp.bogus: "));
  assert_non_null(strstr(err, ":8:9: cameras[1].id: "));
  assert_non_null(strstr(err, ":10:16: rules[0].backends[0]: "));
  assert_int_equal(count_lines(err), 5);
}

static void
test_err_small_buffer(void **state)
{
  const char *path = write_file("t.yaml", "log: {level: x}\nshutdown_grace: "
                                "x\nbogus: 1\n", 0600);
  char small[40];

  (void)state;
  memset(small, 'Z', sizeof(small));
  assert_null(config_load(path, small, sizeof(small)));
  assert_int_equal(strlen(small), sizeof(small) - 1);
  assert_null(config_load("/nonexistent/camgate.yaml", err, sizeof(err)));
  assert_non_null(strstr(err, "/nonexistent/camgate.yaml:"));
  assert_null(config_load(path, NULL, 0));
}

/* ---- the example ---- */

static void
test_example_loads(void **state)
{
  struct config *cfg;
  const struct camera_conf *demo;
  const char *h;

  (void)state;
  cfg = config_load(TESTS_DIR "/../config/camgate.example.yaml", err,
                    sizeof(err));
  if (cfg == NULL)
    fail_msg("%s", err);
  assert_string_equal(cfg->smtp.listen.host, "127.0.0.1");
  assert_int_equal(cfg->smtp.listen.port, 2525);
  assert_string_equal(cfg->spool_path, "./var");
  demo = config_camera_by_user(cfg, "demo");
  assert_non_null(demo);
  assert_string_equal(demo->id, "demo");
  h = demo->smtp_password_hash;
  assert_memory_equal(h, "$y$", 3);
  assert_string_equal(crypt("demo-pass", h), h);
  assert_int_equal(cfg->nbackends, 1);
  assert_string_equal(cfg->backends[0].name, "homeassistant");
  assert_string_equal(cfg->backends[0].u.mqtt.host, "127.0.0.1");
  assert_int_equal(cfg->backends[0].u.mqtt.port, 1883);
  assert_int_equal(cfg->backends[0].u.mqtt.discovery, 1);
  assert_int_equal(cfg->nrules, 1);
  assert_string_equal(cfg->rules[0].backends[0], "homeassistant");
  config_unref(cfg);
}

/* ---- addresses ---- */

static struct cidr
cidr(int family, const char *addr, int prefix)
{
  struct cidr c = {family, {0}, prefix};

  assert_int_equal(inet_pton(family, addr, c.addr), 1);
  return c;
}

static struct sockaddr_storage
sa_of(int family, const char *addr)
{
  struct sockaddr_storage ss;

  memset(&ss, 0, sizeof(ss));
  ss.ss_family = (sa_family_t)family;
  if (family == AF_INET)
    assert_int_equal(inet_pton(AF_INET, addr,
                               &((struct sockaddr_in *)&ss)->sin_addr), 1);
  else
    assert_int_equal(inet_pton(AF_INET6, addr,
                               &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
  return ss;
}

static int
contains(const struct cidr *c, int family, const char *addr)
{
  struct sockaddr_storage ss = sa_of(family, addr);

  return cidr_contains(c, (struct sockaddr *)&ss);
}

static void
test_cidr_contains(void **state)
{
  struct cidr n24 = cidr(AF_INET, "192.0.2.0", 24);
  struct cidr host = cidr(AF_INET, "192.0.2.10", 32);
  struct cidr n20 = cidr(AF_INET, "10.0.16.0", 20);
  struct cidr all4 = cidr(AF_INET, "0.0.0.0", 0);
  struct cidr v6 = cidr(AF_INET6, "2001:db8::", 32);
  struct cidr lo6 = cidr(AF_INET6, "::1", 128);

  (void)state;
  assert_true(contains(&n24, AF_INET, "192.0.2.200"));
  assert_false(contains(&n24, AF_INET, "192.0.3.1"));
  assert_true(contains(&host, AF_INET, "192.0.2.10"));
  assert_false(contains(&host, AF_INET, "192.0.2.11"));
  assert_true(contains(&n20, AF_INET, "10.0.31.255"));
  assert_false(contains(&n20, AF_INET, "10.0.32.0"));
  assert_true(contains(&all4, AF_INET, "203.0.113.9"));
  assert_true(contains(&v6, AF_INET6, "2001:db8:ffff::1"));
  assert_false(contains(&v6, AF_INET6, "2001:db9::1"));
  assert_true(contains(&lo6, AF_INET6, "::1"));
  assert_false(contains(&lo6, AF_INET6, "::2"));
  /* A dual-stack socket's IPv4 peer matches IPv4 networks only. */
  assert_true(contains(&n24, AF_INET6, "::ffff:192.0.2.7"));
  assert_false(contains(&n24, AF_INET6, "::ffff:192.0.3.7"));
  assert_true(contains(&host, AF_INET6, "::ffff:192.0.2.10"));
  assert_false(contains(&v6, AF_INET, "192.0.2.10"));
  assert_false(contains(&n24, AF_INET6, "2001:db8::1"));
  assert_false(contains(&n24, AF_INET6, "::192.0.2.7"));
  assert_false(cidr_contains(&n24, NULL));
}

static void
test_camera_by_addr(void **state)
{
  struct config *cfg = load_text("cameras:\n"
                                 "  - id: a\n"
                                 "    allow_from: 192.0.2.0/24\n"
                                 "  - id: b\n"
                                 "    allow_from: [\"2001:db8::/32\"]\n");
  struct sockaddr_storage ss;

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", err);
  ss = sa_of(AF_INET, "192.0.2.9");
  assert_string_equal(config_camera_by_addr(cfg, (void *)&ss)->id, "a");
  ss = sa_of(AF_INET6, "::ffff:192.0.2.9");
  assert_string_equal(config_camera_by_addr(cfg, (void *)&ss)->id, "a");
  ss = sa_of(AF_INET6, "2001:db8::5");
  assert_string_equal(config_camera_by_addr(cfg, (void *)&ss)->id, "b");
  ss = sa_of(AF_INET, "198.51.100.1");
  assert_null(config_camera_by_addr(cfg, (void *)&ss));
  config_unref(cfg);
}

/* ---- value syntax ---- */

static void
test_parse_duration(void **state)
{
  (void)state;
  assert_int_equal(config_parse_duration("0"), 0);
  assert_int_equal(config_parse_duration("30"), 30);
  assert_int_equal(config_parse_duration("30s"), 30);
  assert_int_equal(config_parse_duration("5m"), 300);
  assert_int_equal(config_parse_duration("2h"), 7200);
  assert_int_equal(config_parse_duration("7d"), 604800);
  assert_int_equal(config_parse_duration("007s"), 7);
  assert_int_equal(config_parse_duration(NULL), -1);
  assert_int_equal(config_parse_duration(""), -1);
  assert_int_equal(config_parse_duration("s"), -1);
  assert_int_equal(config_parse_duration("-5"), -1);
  assert_int_equal(config_parse_duration("+5"), -1);
  assert_int_equal(config_parse_duration(" 5"), -1);
  assert_int_equal(config_parse_duration("5 m"), -1);
  assert_int_equal(config_parse_duration("5mm"), -1);
  assert_int_equal(config_parse_duration("5M"), -1);
  assert_int_equal(config_parse_duration("1.5h"), -1);
  assert_int_equal(config_parse_duration("99999999999999999999"), -1);
  assert_int_equal(config_parse_duration("999999999999999999d"), -1);
}

static void
test_parse_size(void **state)
{
  (void)state;
  assert_int_equal(config_parse_size("0"), 0);
  assert_int_equal(config_parse_size("1024"), 1024);
  assert_int_equal(config_parse_size("512K"), 512 * 1024);
  assert_int_equal(config_parse_size("32M"), 32 * 1024 * 1024);
  assert_int_equal(config_parse_size("1G"), 1024LL * 1024 * 1024);
  assert_int_equal(config_parse_size("1k"), 1024);
  assert_int_equal(config_parse_size(NULL), -1);
  assert_int_equal(config_parse_size(""), -1);
  assert_int_equal(config_parse_size("K"), -1);
  assert_int_equal(config_parse_size("1T"), -1);
  assert_int_equal(config_parse_size("1KB"), -1);
  assert_int_equal(config_parse_size("-1K"), -1);
  assert_int_equal(config_parse_size("9223372036854775807K"), -1);
  assert_int_equal(config_parse_size("99999999999999999999"), -1);
}

/* ---- summary ---- */

static void
test_summary(void **state)
{
  struct config *cfg = load_full();
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);

  (void)state;
  assert_non_null(f);
  config_print_summary(cfg, f);
  fclose(f);
  assert_non_null(strstr(out, "listener smtp [::1]:2526 starttls=yes "
                         "max_size=16M\n"));
  assert_non_null(strstr(out, "listener smtps 0.0.0.0:4650 "));
  assert_non_null(strstr(out, "camera shed name=\"Garden shed\" "
                         "smtp_user=cam-shed allow=3 channel=none "
                         "kinds=motion,person\n"));
  assert_non_null(strstr(out, "camera nvr.1 name=\"nvr.1\" smtp_user=nvr "
                         "allow=0 channel=body kinds=-\n"));
  assert_non_null(strstr(out, "backend ha type=mqtt host=broker.lan:8883 "
                         "user=camgate password=(redacted) tls=yes "
                         "discovery=no\n"));
  assert_non_null(strstr(out, "backend second type=mqtt "
                         "host=127.0.0.1:1883 user=- password=(redacted) "
                         "tls=no discovery=yes\n"));
  assert_non_null(strstr(out, "rule \"everything to HA\" camera=* "
                         "kind=motion,person source=smtp state=start "
                         "-> ha,second (continue)\n"));
  assert_non_null(strstr(out, "rule \"rule 2\" camera=nvr.1-* kind=* "
                         "source=* state=* -> drop\n"));
  assert_int_equal(count_lines(out), 8);
  assert_null(strstr(out, "hunter2"));
  assert_null(strstr(out, "s3cret"));
  assert_null(strstr(out, "$y$"));
  assert_null(strstr(out, "hashfromfile"));
  free(out);
  config_unref(cfg);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_full_globals),
    cmocka_unit_test(test_full_smtp),
    cmocka_unit_test(test_full_cameras),
    cmocka_unit_test(test_full_backends),
    cmocka_unit_test(test_full_rules),
    cmocka_unit_test(test_refcount),
    cmocka_unit_test(test_defaults_empty),
    cmocka_unit_test(test_defaults_items),
    cmocka_unit_test(test_err_unknown_key),
    cmocka_unit_test(test_err_wrong_type),
    cmocka_unit_test(test_err_bounds),
    cmocka_unit_test(test_err_duration_size_endpoint),
    cmocka_unit_test(test_err_cidr),
    cmocka_unit_test(test_err_regex),
    cmocka_unit_test(test_err_duplicates),
    cmocka_unit_test(test_err_rule_backend),
    cmocka_unit_test(test_err_tls),
    cmocka_unit_test(test_err_secret_file),
    cmocka_unit_test(test_err_secret_not_echoed),
    cmocka_unit_test(test_err_backend_type),
    cmocka_unit_test(test_err_values),
    cmocka_unit_test(test_err_syntax),
    cmocka_unit_test(test_err_many),
    cmocka_unit_test(test_err_small_buffer),
    cmocka_unit_test(test_example_loads),
    cmocka_unit_test(test_cidr_contains),
    cmocka_unit_test(test_camera_by_addr),
    cmocka_unit_test(test_parse_duration),
    cmocka_unit_test(test_parse_size),
    cmocka_unit_test(test_summary),
  };

  return cmocka_run_group_tests(tests, setup, teardown);
}
