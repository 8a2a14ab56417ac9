/* test_ntfy.c - what an ntfy push says, its headers, and the ntfy keys
 * of the config. The backend's requests are tested against a local
 * ntfy-compatible server in tests/integration/test_ntfy_e2e.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/ntfy.h"
#include "config/config.h"
#include "gateway/event.h"
#include "gateway/log.h"

/* The config structs hold char *; these tests point them at literals
 * they never write. */
#define W(s) ((char *)(s))

/* ---- an RFC 2047 decoder for checking what was encoded ---- */

/* Decodes a header value made of "=?UTF-8?B?...?=" words separated by
 * single spaces into out; fails the test on anything else. */
static void
rfc2047_decode(const char *v, char *out, size_t outsz)
{
  size_t o = 0;
  const char *p = v;

  while (*p) {
    const char *end = strstr(p, "?=");
    unsigned char buf[256];
    size_t b64len;
    int n;

    if (strncmp(p, "=?UTF-8?B?", 10) != 0 || end == NULL)
      fail_msg("not an encoded word at \"%s\"", p);
    if (end + 2 - p > 75)
      fail_msg("encoded word longer than 75: %.*s", (int)(end + 2 - p), p);
    b64len = (size_t)(end - (p + 10));
    n = EVP_DecodeBlock(buf, (const unsigned char *)p + 10, (int)b64len);
    assert_true(n >= 0);
    if (b64len >= 1 && p[10 + b64len - 1] == '=')
      n--;
    if (b64len >= 2 && p[10 + b64len - 2] == '=')
      n--;
    assert_true(o + (size_t)n < outsz);
    memcpy(out + o, buf, (size_t)n);
    o += (size_t)n;
    p = end + 2;
    if (*p == ' ')
      p++;
  }
  out[o] = '\0';
}

static int
all_ascii(const char *s)
{
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7F)
      return 0;
  return 1;
}

/* Whether s is whole UTF-8 characters (lead and continuation bytes
 * only; enough to see a character cut in two). */
static int
utf8_valid(const char *s)
{
  const unsigned char *p = (const unsigned char *)s;

  while (*p) {
    int n = *p < 0x80 ? 1 : *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3
            : *p >= 0xC0 ? 2 : 0;

    if (n == 0)
      return 0;
    for (int i = 1; i < n; i++)
      if ((p[i] & 0xC0) != 0x80)
        return 0;
    p += n;
  }
  return 1;
}

/* ---- small parts ---- */

static void
test_priority(void **state)
{
  (void)state;
  assert_int_equal(ntfy_priority_parse("min"), 1);
  assert_int_equal(ntfy_priority_parse("low"), 2);
  assert_int_equal(ntfy_priority_parse("default"), 3);
  assert_int_equal(ntfy_priority_parse("high"), 4);
  assert_int_equal(ntfy_priority_parse("urgent"), 5);
  assert_int_equal(ntfy_priority_parse("max"), 5);
  assert_int_equal(ntfy_priority_parse("HIGH"), 4);
  assert_int_equal(ntfy_priority_parse("1"), 1);
  assert_int_equal(ntfy_priority_parse("5"), 5);
  assert_int_equal(ntfy_priority_parse("6"), 0);
  assert_int_equal(ntfy_priority_parse(""), 0);
  assert_int_equal(ntfy_priority_parse(NULL), 0);
}

static void
test_kind_tags(void **state)
{
  (void)state;
  assert_string_equal(ntfy_kind_tag("motion"), "walking");
  assert_string_equal(ntfy_kind_tag("person"), "bust_in_silhouette");
  assert_string_equal(ntfy_kind_tag("vehicle"), "car");
  assert_string_equal(ntfy_kind_tag("animal"), "dog");
  assert_string_equal(ntfy_kind_tag("doorbell"), "bell");
  assert_string_equal(ntfy_kind_tag("tamper"), "warning");
  assert_string_equal(ntfy_kind_tag("line_crossing"), "construction");
  assert_string_equal(ntfy_kind_tag("intrusion"), "rotating_light");
  assert_string_equal(ntfy_kind_tag("alert"), "warning");
  assert_string_equal(ntfy_kind_tag("something_new"), "warning");
  assert_string_equal(ntfy_kind_tag(NULL), "warning");
}

static void
test_header_value_ascii(void **state)
{
  char *v;

  (void)state;
  v = ntfy_header_value("Motion on Driveway (D4)");
  assert_string_equal(v, "Motion on Driveway (D4)");
  free(v);
  v = ntfy_header_value("");
  assert_string_equal(v, "");
  free(v);
}

static void
test_header_value_encoded(void **state)
{
  static const char *const inputs[] = {
    "Bewegung im Garten \xe2\x80\x93 Gartenh\xc3\xa4uschen",
    "line one\nline two",
    "looks like =?UTF-8?B?x?= but is not",
    "\xf0\x9f\x9a\xa8 sirens \xf0\x9f\x9a\xa8",
  };
  char out[4096];

  (void)state;
  for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
    char *v = ntfy_header_value(inputs[i]);

    assert_true(all_ascii(v));
    assert_null(strchr(v, '\n'));
    rfc2047_decode(v, out, sizeof(out));
    assert_string_equal(out, inputs[i]);
    free(v);
  }
}

static void
test_header_value_long_utf8(void **state)
{
  char in[1200];
  char out[4096];
  size_t n = 0;
  const char *p;
  char *v;

  (void)state;
  /* 2-, 3- and 4-byte characters in turn: words must split between
   * characters, so each decodes to valid UTF-8 on its own. */
  while (n + 9 < sizeof(in) - 1) {
    memcpy(in + n, "\xc3\xa4\xe2\x82\xac\xf0\x9f\x93\xb7", 9);
    n += 9;
  }
  in[n] = '\0';
  v = ntfy_header_value(in);
  assert_true(all_ascii(v));
  rfc2047_decode(v, out, sizeof(out));
  assert_string_equal(out, in);
  for (p = v; *p;) {
    const char *end = strstr(p, "?=");
    char word[128];
    char dec[128];

    assert_non_null(end);
    memcpy(word, p, (size_t)(end + 2 - p));
    word[end + 2 - p] = '\0';
    rfc2047_decode(word, dec, sizeof(dec));
    assert_true(utf8_valid(dec));
    p = end + 2;
    if (*p == ' ')
      p++;
  }
  free(v);
}

static void
test_header_value_bad_utf8(void **state)
{
  char out[256];
  char *v;

  (void)state;
  v = ntfy_header_value("caf\xe9 \xff ok");
  rfc2047_decode(v, out, sizeof(out));
  assert_string_equal(out, "caf? ? ok");
  free(v);
}

static void
test_url_clean(void **state)
{
  char *u;

  (void)state;
  u = ntfy_url_clean("http://cam.local/view?cam=Front Door&x=\"1\"");
  assert_string_equal(u, "http://cam.local/view?cam=Front%20Door&x=%221%22");
  free(u);
  u = ntfy_url_clean("http://h/Gr\xc3\xbcn<b>");
  assert_string_equal(u, "http://h/Gr%C3%BCn%3Cb%3E");
  free(u);
}

static void
test_filename(void **state)
{
  struct cam_event *ev = cam_event_new();
  char *f;

  (void)state;
  cam_event_set(&ev->camera, "nvr-yard/D4 x");
  ev->recv_time = 1714566645000;            /* 2024-05-01 12:30:45 UTC */
  f = ntfy_filename(ev, "image/jpeg");
  assert_string_equal(f, "nvr-yard_D4_x-20240501-123045.jpg");
  free(f);
  f = ntfy_filename(ev, "image/png");
  assert_string_equal(f, "nvr-yard_D4_x-20240501-123045.png");
  free(f);
  cam_event_free(ev);
}

static void
test_auth_header(void **state)
{
  struct ntfy_conf nc = {0};
  char *a;

  (void)state;
  assert_null(ntfy_auth_header(&nc));
  nc.token = W("tk_abcdefghijklmnopqrstuvwxyz012");
  a = ntfy_auth_header(&nc);
  assert_string_equal(a, "Authorization: Bearer "
                         "tk_abcdefghijklmnopqrstuvwxyz012");
  free(a);
  nc.token = NULL;
  nc.user = W("phil");
  nc.password = W("mypass");
  a = ntfy_auth_header(&nc);
  assert_string_equal(a, "Authorization: Basic cGhpbDpteXBhc3M=");
  free(a);
  nc.password = NULL;
  assert_null(ntfy_auth_header(&nc));
}

static void
test_server_reason(void **state)
{
  const char *json = "{\"code\":41301,\"http\":413,\"error\":\"attachment "
                     "too large, or bandwidth limit reached\"}\n";
  const char *text = "Too \"many\" \\ requests\r\nsecond line";
  char out[64];

  (void)state;
  ntfy_server_reason(json, strlen(json), out, sizeof(out));
  assert_string_equal(out, "attachment too large, or bandwidth limit "
                           "reached");
  ntfy_server_reason(text, strlen(text), out, sizeof(out));
  assert_string_equal(out, "Too 'many' / requests");
  ntfy_server_reason("", 0, out, sizeof(out));
  assert_string_equal(out, "");
  ntfy_server_reason("\x01\xff", 2, out, 3);
  assert_string_equal(out, "??");
}

/* ---- the message and its headers ---- */

static struct cam_event *
sample_event(void)
{
  struct cam_event *ev = cam_event_new();

  ev->id = 42;
  cam_event_set(&ev->camera, "nvr-yard-D4");
  cam_event_set(&ev->camera_name, "Yard NVR D4");
  cam_event_set(&ev->kind, "motion");
  cam_event_set(&ev->title, "Motion Detection Alarm");
  cam_event_set(&ev->text, "  EVENT TYPE: Motion Detection\n"
                           "CAMERA NAME(NUM): Driveway(D4)\n\n");
  ev->state = EVENT_PULSE;
  ev->recv_time = 1714566645000;
  return ev;
}

static void
test_msg_defaults(void **state)
{
  struct ntfy_conf nc = {0};
  struct cam_event *ev = sample_event();
  struct ntfy_msg m;

  (void)state;
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_string_equal(m.title, "Yard NVR D4: motion");
  assert_string_equal(m.message, "EVENT TYPE: Motion Detection\n"
                                 "CAMERA NAME(NUM): Driveway(D4)");
  assert_int_equal(m.priority, 3);
  assert_string_equal(m.tags, "walking");
  assert_null(m.click);
  assert_null(m.icon);
  assert_null(m.actions);
  ntfy_msg_clear(&m);
  /* No text: the subject; nothing at all: what and when. */
  cam_event_set(&ev->text, NULL);
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_string_equal(m.message, "Motion Detection Alarm");
  ntfy_msg_clear(&m);
  cam_event_set(&ev->title, " ");
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_string_equal(m.message, "motion at 2024-05-01 12:30:45 UTC");
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

static void
test_msg_folded(void **state)
{
  struct ntfy_conf nc = {0};
  struct cam_event *ev = sample_event();
  struct ntfy_msg m;

  (void)state;
  ev->folded = 4;
  ev->folded_since = 1714566120000;         /* 12:22 UTC */
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_non_null(strstr(m.message, "Driveway(D4)\n\n+4 more motion "
                                    "events since 12:22"));
  ntfy_msg_clear(&m);
  /* A long text is cut, the count survives. */
  {
    char *big = malloc(NTFY_MESSAGE_MAX * 2);

    assert_non_null(big);
    memset(big, 'x', NTFY_MESSAGE_MAX * 2 - 1);
    big[NTFY_MESSAGE_MAX * 2 - 1] = '\0';
    cam_event_set(&ev->text, big);
    free(big);
  }
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_true(strlen(m.message) <= NTFY_MESSAGE_MAX);
  assert_non_null(strstr(m.message, "+4 more motion events since 12:22"));
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

static void
test_msg_configured(void **state)
{
  char *tags[] = {W("camera"), W("{kind}"), W("a,b")};
  struct ntfy_action_conf actions[2] = {
    {NTFY_ACTION_VIEW, W("Open {camera_name}"),
     W("http://nvr.lan/cam/{camera}"), NULL, NULL, 0},
    {NTFY_ACTION_HTTP, W("Siren \xe2\x80\x93 on"),
     W("http://hass.lan/api/siren"), NULL,
     W("{{\"camera\": \"{camera}\"}}"), 1},
  };
  struct ntfy_conf nc = {0};
  struct cam_event *ev = sample_event();
  struct ntfy_msg m;

  (void)state;
  nc.title = W("{camera_name} saw {kind}");
  nc.message = W("At {time}: {title}");
  nc.priority = 4;
  nc.tags = tags;
  nc.ntags = 3;
  nc.click = W("http://nvr.lan/view?name={camera_name}");
  nc.icon = W("https://example.com/icons/{kind}.png");
  nc.actions = actions;
  nc.nactions = 2;
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  assert_string_equal(m.title, "Yard NVR D4 saw motion");
  assert_string_equal(m.message, "At 12:30: Motion Detection Alarm");
  assert_int_equal(m.priority, 4);
  assert_string_equal(m.tags, "camera,motion,a b");
  assert_string_equal(m.click, "http://nvr.lan/view?name=Yard%20NVR%20D4");
  assert_string_equal(m.icon, "https://example.com/icons/motion.png");
  assert_string_equal(m.actions,
    "[{\"action\":\"view\",\"label\":\"Open Yard NVR D4\","
    "\"url\":\"http://nvr.lan/cam/nvr-yard-D4\",\"clear\":false},"
    "{\"action\":\"http\",\"label\":\"Siren \\u2013 on\","
    "\"url\":\"http://hass.lan/api/siren\",\"method\":\"POST\","
    "\"body\":\"{\\\"camera\\\": \\\"nvr-yard-D4\\\"}\",\"clear\":true}]");
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

static void
test_msg_rule_action(void **state)
{
  struct ntfy_conf nc = {0};
  struct action act = {0};
  struct cam_event *ev = sample_event();
  struct ntfy_msg m;

  (void)state;
  nc.title = W("backend title");
  nc.priority = 2;
  act.priority = "urgent";
  act.title = "Rule: {camera}";
  act.message = "rule message";
  ntfy_msg_build(&m, &nc, &act, ev, NULL);
  assert_string_equal(m.title, "Rule: nvr-yard-D4");
  assert_string_equal(m.message, "rule message");
  assert_int_equal(m.priority, 5);
  ntfy_msg_clear(&m);
  /* An action without a title or priority keeps the backend's own. */
  memset(&act, 0, sizeof(act));
  ntfy_msg_build(&m, &nc, &act, ev, NULL);
  assert_string_equal(m.title, "backend title");
  assert_int_equal(m.priority, 2);
  ntfy_msg_clear(&m);
  act.priority = W("default");
  ntfy_msg_build(&m, &nc, &act, ev, NULL);
  assert_int_equal(m.priority, 3);
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

static const char *
header_get(char **h, const char *name)
{
  size_t len = strlen(name);

  for (size_t i = 0; h[i]; i++)
    if (strncmp(h[i], name, len) == 0 && h[i][len] == ':' &&
        h[i][len + 1] == ' ')
      return h[i] + len + 2;
  return NULL;
}

static void
test_headers_with_picture(void **state)
{
  struct ntfy_conf nc = {0};
  struct cam_event *ev = sample_event();
  char out[1024];
  struct ntfy_msg m;
  char **h;
  size_t n;

  (void)state;
  nc.click = W("http://nvr.lan/{camera}");
  cam_event_set(&ev->camera_name, "Gartenh\xc3\xa4uschen");
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  h = ntfy_headers(&m, "nvr-yard-D4-20240501-123045.jpg", "image/jpeg", &n);
  for (size_t i = 0; i < n; i++)
    assert_true(all_ascii(h[i]));
  assert_null(h[n]);
  rfc2047_decode(header_get(h, "Title"), out, sizeof(out));
  assert_string_equal(out, "Gartenh\xc3\xa4uschen: motion");
  /* The message has a newline, so it is encoded too. */
  rfc2047_decode(header_get(h, "Message"), out, sizeof(out));
  assert_string_equal(out, m.message);
  assert_string_equal(header_get(h, "Filename"),
                      "nvr-yard-D4-20240501-123045.jpg");
  assert_string_equal(header_get(h, "X-Priority"), "3");
  assert_string_equal(header_get(h, "Tags"), "walking");
  assert_string_equal(header_get(h, "Click"), "http://nvr.lan/nvr-yard-D4");
  assert_string_equal(header_get(h, "Content-Type"), "image/jpeg");
  assert_null(header_get(h, "Icon"));
  assert_null(header_get(h, "Actions"));
  ntfy_headers_free(h);
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

static void
test_headers_text_only(void **state)
{
  struct ntfy_conf nc = {0};
  struct cam_event *ev = sample_event();
  struct ntfy_msg m;
  char **h;
  size_t n;

  (void)state;
  ntfy_msg_build(&m, &nc, NULL, ev, NULL);
  h = ntfy_headers(&m, NULL, NULL, &n);
  assert_null(header_get(h, "Message"));
  assert_null(header_get(h, "Filename"));
  assert_string_equal(header_get(h, "Title"), "Yard NVR D4: motion");
  assert_string_equal(header_get(h, "Content-Type"),
                      "text/plain; charset=utf-8");
  ntfy_headers_free(h);
  ntfy_msg_clear(&m);
  cam_event_free(ev);
}

/* ---- the config keys ---- */

static char tmpdir[64];
static char errbuf[4096];

static int
cfg_setup(void **state)
{
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/camgate-test-ntfy-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  return 0;
}

static int
cfg_teardown(void **state)
{
  char path[128];

  (void)state;
  snprintf(path, sizeof(path), "%s/t.yaml", tmpdir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/token", tmpdir);
  unlink(path);
  rmdir(tmpdir);
  return 0;
}

static struct config *
cfg_load_rules(const char *backend, const char *rules)
{
  char path[128];
  FILE *f;

  snprintf(path, sizeof(path), "%s/t.yaml", tmpdir);
  f = fopen(path, "w");
  assert_non_null(f);
  fprintf(f, "spool: {path: %s/spool}\n"
             "backends:\n"
             "  - name: phone\n"
             "    type: ntfy\n%s"
             "rules:\n%s", tmpdir, backend, rules);
  fclose(f);
  errbuf[0] = '\0';
  return config_load(path, errbuf, sizeof(errbuf));
}

static struct config *
cfg_load(const char *backend)
{
  return cfg_load_rules(backend, "  - backends: [phone]\n");
}

static void
test_config_defaults(void **state)
{
  struct config *cfg = cfg_load("    topic: camgate-yard\n");
  const struct ntfy_conf *nc;

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", errbuf);
  assert_int_equal(cfg->backends[0].type, BACKEND_NTFY);
  nc = &cfg->backends[0].u.ntfy;
  assert_string_equal(nc->url, "https://ntfy.sh");
  assert_string_equal(nc->topic, "camgate-yard");
  assert_null(nc->token);
  assert_int_equal(nc->priority, 3);
  assert_int_equal(nc->snapshot_w, 640);
  assert_int_equal(nc->snapshot_h, 480);
  assert_int_equal(nc->quality, 75);
  assert_int_equal(nc->max_attachment, 2 * 1024 * 1024);
  assert_int_equal(nc->timeout, 30);
  assert_int_equal(nc->ntags, 0);
  assert_int_equal(nc->nactions, 0);
  config_unref(cfg);
}

static void
test_config_full(void **state)
{
  char path[128], yaml[1024];
  struct config *cfg;
  const struct ntfy_conf *nc;
  FILE *f;

  (void)state;
  snprintf(path, sizeof(path), "%s/token", tmpdir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("tk_secret0123456789\n", f);
  fclose(f);
  chmod(path, 0600);
  snprintf(yaml, sizeof(yaml),
           "    url: http://127.0.0.1:8080/\n"
           "    topic: yard\n"
           "    token_file: %s\n"
           "    priority: high\n"
           "    tags: [cctv, \"{kind}\"]\n"
           "    click: \"http://nvr.lan/{camera}\"\n"
           "    actions:\n"
           "      - {action: view, label: Live, url: \"http://nvr/{camera}\"}\n"
           "      - {action: http, label: Siren, url: \"http://hass/s\","
           " method: PUT}\n"
           "    snapshot: 320x240\n"
           "    quality: 60\n"
           "    max_attachment: 512K\n", path);
  cfg = cfg_load(yaml);
  if (cfg == NULL)
    fail_msg("%s", errbuf);
  nc = &cfg->backends[0].u.ntfy;
  assert_string_equal(nc->token, "tk_secret0123456789");
  assert_int_equal(nc->priority, 4);
  assert_int_equal(nc->ntags, 2);
  assert_int_equal(nc->nactions, 2);
  assert_int_equal(nc->actions[1].type, NTFY_ACTION_HTTP);
  assert_string_equal(nc->actions[1].method, "PUT");
  assert_int_equal(nc->snapshot_w, 320);
  assert_int_equal(nc->snapshot_h, 240);
  assert_int_equal(nc->quality, 60);
  assert_int_equal(nc->max_attachment, 512 * 1024);
  config_unref(cfg);
  cfg = cfg_load("    topic: yard\n    snapshot: none\n    priority: 1\n");
  if (cfg == NULL)
    fail_msg("%s", errbuf);
  assert_int_equal(cfg->backends[0].u.ntfy.snapshot_w, -1);
  assert_int_equal(cfg->backends[0].u.ntfy.priority, 1);
  config_unref(cfg);
}

static void
expect_cfg_error(const char *backend, const char *frag)
{
  struct config *cfg = cfg_load(backend);

  if (cfg)
    config_unref(cfg);
  assert_null(cfg);
  if (strstr(errbuf, frag) == NULL)
    fail_msg("want \"%s\" in:\n%s", frag, errbuf);
}

static void
test_config_errors(void **state)
{
  (void)state;
  expect_cfg_error("    url: https://ntfy.sh\n", "topic: expected a string "
                   "(required)");
  expect_cfg_error("    topic: a/b\n", "1 to 64 of A-Z a-z 0-9 _ -");
  expect_cfg_error("    topic: t\n    priority: loud\n",
                   "expected a known ntfy priority");
  expect_cfg_error("    topic: t\n    url: ftp://x\n",
                   "an http:// or https:// URL");
  expect_cfg_error("    topic: t\n    url: https://phil:pw@ntfy.example\n",
                   "url: expected a URL without user:password@");
  expect_cfg_error("    topic: t\n    token: tk_x\n    user: u\n"
                   "    password: p\n", "token: expected a token or a user "
                   "and password, found both");
  expect_cfg_error("    topic: t\n    user: u\n",
                   "expected user and password together, found only user");
  expect_cfg_error("    topic: t\n    click: \"http://x/{nope}\"\n",
                   "a known {field}");
  expect_cfg_error("    topic: t\n    snapshot: huge\n",
                   "a snapshot size like 640x480");
  expect_cfg_error("    topic: t\n    quality: 0\n",
                   "an integer from 1 to 100");
  expect_cfg_error("    topic: t\n    actions:\n"
                   "      - {label: a, url: \"http://x\"}\n"
                   "      - {label: b, url: \"http://x\"}\n"
                   "      - {label: c, url: \"http://x\"}\n"
                   "      - {label: d, url: \"http://x\"}\n",
                   "expected at most 3 actions");
  expect_cfg_error("    topic: t\n    actions:\n"
                   "      - {action: broadcast, label: a, url: \"http://x\"}\n",
                   "expected a known ntfy action");
  expect_cfg_error("    topic: t\n    password: p\n    user: \"a:b\"\n",
                   "a user name without spaces or ':'");
}

/* The backend's own keys are its defaults: a rule's action wins. */
static void
test_config_action_merge(void **state)
{
  struct config *cfg = cfg_load_rules(
      "    topic: t\n    priority: high\n    snapshot: 320x240\n"
      "    title: \"{camera}!\"\n",
      "  - name: loud\n"
      "    match: {kind: person}\n"
      "    backends: [{backend: phone, priority: urgent, snapshot: full}]\n"
      "  - name: plain\n"
      "    backends: [phone]\n");
  struct action act;

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", errbuf);
  assert_int_equal(config_action(cfg, "plain", "phone", "cam", &act), 0);
  assert_string_equal(act.priority, "high");
  assert_string_equal(act.title, "{camera}!");
  assert_int_equal(act.snapshot, 1);
  assert_int_equal(act.snapshot_w, 320);
  assert_int_equal(act.snapshot_h, 240);
  assert_int_equal(config_action(cfg, "loud", "phone", "cam", &act), 0);
  assert_string_equal(act.priority, "urgent");
  assert_int_equal(act.snapshot, 1);
  assert_int_equal(act.snapshot_w, 0);
  assert_int_equal(act.snapshot_h, 0);
  config_unref(cfg);
}

static void
test_config_summary_redacts(void **state)
{
  struct config *cfg = cfg_load("    topic: t\n    user: phil\n"
                                "    password: hunter2-secret\n");
  char *buf = NULL;
  size_t len = 0;
  FILE *f;

  (void)state;
  if (cfg == NULL)
    fail_msg("%s", errbuf);
  f = open_memstream(&buf, &len);
  assert_non_null(f);
  config_print_summary(cfg, f);
  fclose(f);
  assert_non_null(strstr(buf, "backend phone type=ntfy url=https://ntfy.sh "
                              "topic=t user=phil password=(redacted)"));
  assert_null(strstr(buf, "hunter2"));
  free(buf);
  config_unref(cfg);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_priority),
    cmocka_unit_test(test_kind_tags),
    cmocka_unit_test(test_header_value_ascii),
    cmocka_unit_test(test_header_value_encoded),
    cmocka_unit_test(test_header_value_long_utf8),
    cmocka_unit_test(test_header_value_bad_utf8),
    cmocka_unit_test(test_url_clean),
    cmocka_unit_test(test_filename),
    cmocka_unit_test(test_auth_header),
    cmocka_unit_test(test_server_reason),
    cmocka_unit_test(test_msg_defaults),
    cmocka_unit_test(test_msg_folded),
    cmocka_unit_test(test_msg_configured),
    cmocka_unit_test(test_msg_rule_action),
    cmocka_unit_test(test_headers_with_picture),
    cmocka_unit_test(test_headers_text_only),
    cmocka_unit_test(test_config_defaults),
    cmocka_unit_test(test_config_full),
    cmocka_unit_test(test_config_errors),
    cmocka_unit_test(test_config_action_merge),
    cmocka_unit_test(test_config_summary_redacts),
  };

  log_set_level(LOGL_ERROR);
  return cmocka_run_group_tests(tests, cfg_setup, cfg_teardown);
}
