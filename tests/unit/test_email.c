/* test_email.c - backends/email_msg.c and gateway/token.c without a
 * server: the message as GMime reads it back (headers, RFC 2047, base64
 * lines of 76, CRLF, attachment bytes), the size budget, the Graph JSON,
 * token files and token endpoint answers, and the e-mail config keys
 * with their provider defaults. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <gmime/gmime.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/email.h"
#include "config/config.h"
#include "gateway/token.h"

static char tmpdir[64];

/* The config holds char *; -Wwrite-strings makes literals const. */
static char s_from[] = "alerts@contoso.example";
static char s_from_name[] = "camgate";
static char s_subject[] = "{camera_name}: {kind} at {time}";
static char s_subject2[] = "{camera}: {kind}";
static char s_body[] = "{title}\n\n{text}\nRule: {rule}\n";
static char s_tz[] = "Europe/Berlin";
static char s_to1[] = "owner@example.net";
static char s_to2[] = "second@example.net";
static char s_cid[] = "cid";
static char s_sec[] = "sec";
static char s_scope_smtp[] =
  "https://outlook.office.com/SMTP.Send offline_access";
static char s_scope_graph[] = "https://graph.microsoft.com/.default";

static struct cam_event *
make_event(size_t jpeg_len)
{
  struct cam_event *ev = cam_event_new();
  unsigned char *jpeg = malloc(jpeg_len);

  for (size_t i = 0; i < jpeg_len; i++)
    jpeg[i] = (unsigned char)(i * 7 + 3);
  jpeg[0] = 0xff;
  jpeg[1] = 0xd8;
  ev->id = 42;
  cam_event_set(&ev->camera, "shed");
  cam_event_set(&ev->camera_name, "Gartenhütte");
  cam_event_set(&ev->source, "smtp");
  cam_event_set(&ev->kind, "motion");
  cam_event_set(&ev->title, "Motion on channel 1");
  cam_event_set(&ev->text, "Something moved.\nTwice.");
  cam_event_set(&ev->rule, "night");
  ev->state = EVENT_START;
  ev->device_time = 1714566645000;   /* 2024-05-01 12:30:45 UTC */
  ev->recv_time = ev->device_time + 1000;
  cam_event_add_label(ev, "envelope_from", "cam@cameras.example");
  cam_event_add_attachment_owned(ev, "snap.jpg", "image/jpeg", jpeg,
                                 jpeg_len);
  return ev;
}

static void
make_conf(struct email_conf *ec, char **to)
{
  memset(ec, 0, sizeof(*ec));
  ec->from = s_from;
  ec->from_name = s_from_name;
  ec->to = to;
  ec->nto = 1;
  ec->subject = s_subject;
  ec->body = s_body;
  ec->time_zone = s_tz;
  ec->reply_to_camera = 1;
  ec->attach = 1;
  ec->max_size = 20 * 1024 * 1024;
}

static GMimeMessage *
parse(const char *data, size_t len)
{
  GMimeStream *st = g_mime_stream_mem_new_with_buffer(data, len);
  GMimeParser *p = g_mime_parser_new_with_stream(st);
  GMimeMessage *m = g_mime_parser_construct_message(p, NULL);

  g_object_unref(p);
  g_object_unref(st);
  assert_non_null(m);
  return m;
}

static void
test_message(void **state)
{
  char *to[] = {s_to1};
  struct email_conf ec;
  struct cam_event *ev = make_event(5000);
  size_t len = 0;
  char *raw;
  GMimeMessage *m;
  GMimeObject *part = NULL;
  InternetAddressList *l;
  const char *subject;

  (void)state;
  make_conf(&ec, to);
  raw = email_build_message(&ec, ev, &len);
  assert_int_equal(strlen(raw), len);
  /* CRLF line ends only; base64 lines of 76 at most. */
  for (size_t i = 0; i < len; i++)
    if (raw[i] == '\n')
      assert_true(i > 0 && raw[i - 1] == '\r');
  for (char *p = raw, *e = strstr(p, "\r\n"); e != NULL;
       p = e + 2, e = strstr(p, "\r\n"))
    assert_true(e - p <= 998);
  assert_non_null(strstr(raw, "MIME-Version: 1.0\r\n"));
  assert_non_null(strstr(raw, "Subject: =?"));   /* RFC 2047: "ü" */
  assert_non_null(strstr(raw, "Content-Transfer-Encoding: base64"));
  m = parse(raw, len);
  subject = g_mime_message_get_subject(m);
  assert_string_equal(subject, "Gartenhütte: motion at 14:30");
  l = g_mime_message_get_from(m);
  assert_string_equal(internet_address_mailbox_get_addr(
    INTERNET_ADDRESS_MAILBOX(internet_address_list_get_address(l, 0))),
    "alerts@contoso.example");
  l = g_mime_message_get_reply_to(m);
  assert_int_equal(internet_address_list_length(l), 1);
  assert_non_null(g_mime_message_get_date(m));
  assert_non_null(strstr(g_mime_message_get_message_id(m), "camgate.42."));
  {
    GMimePartIter *it = g_mime_part_iter_new(GMIME_OBJECT(m));

    do {
      GMimeObject *o = g_mime_part_iter_get_current(it);

      if (GMIME_IS_PART(o) && g_mime_content_type_is_type(
            g_mime_object_get_content_type(o), "image", "jpeg"))
        part = o;
    } while (g_mime_part_iter_next(it));
    assert_non_null(part);
    {
      GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(part));
      GMimeStream *out = g_mime_stream_mem_new();
      GByteArray *ba;

      g_mime_data_wrapper_write_to_stream(dw, out);
      ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(out));
      assert_int_equal(ba->len, 5000);
      assert_memory_equal(ba->data, ev->att[0].data, 5000);
      g_object_unref(out);
    }
    assert_string_equal(g_mime_part_get_filename(GMIME_PART(part)),
                        "snap.jpg");
    g_mime_part_iter_free(it);
  }
  {
    const char *b = strstr(raw, "\r\n\r\n/9g");   /* 0xff 0xd8 in base64 */

    assert_non_null(b);
    assert_int_equal(strstr(b + 4, "\r\n") - (b + 4), 76);
  }
  g_object_unref(m);
  free(raw);
  cam_event_free(ev);
}

static void
test_folded_and_no_reply_to(void **state)
{
  char *to[] = {s_to1};
  struct email_conf ec;
  struct cam_event *ev = make_event(100);
  struct email_content c;

  (void)state;
  make_conf(&ec, to);
  ec.reply_to_camera = 0;
  ec.subject = s_subject2;
  ev->folded = 4;
  ev->folded_since = 1714566645000 - 120000;   /* 12:28:45 UTC */
  email_compose(&ec, ev, ec.max_size, &c);
  assert_non_null(strstr(c.subject, "shed: motion (+4 more"));
  assert_non_null(strstr(c.subject, "14:28"));
  assert_non_null(strstr(c.text, "+4 more"));
  assert_int_equal(c.attach[0], 1);
  email_content_clear(&c);
  {
    size_t len;
    char *raw = email_build_message(&ec, ev, &len);

    assert_null(strstr(raw, "Reply-To"));
    free(raw);
  }
  cam_event_free(ev);
}

static void
test_size_budget(void **state)
{
  char *to[] = {s_to1};
  struct email_conf ec;
  struct cam_event *ev = make_event(300 * 1024);
  size_t len = 0;
  char *raw;

  (void)state;
  make_conf(&ec, to);
  ec.max_size = 256 * 1024;
  raw = email_build_message(&ec, ev, &len);
  assert_true(len < 256 * 1024);
  assert_null(strstr(raw, "image/jpeg"));
  assert_non_null(strstr(raw, "snap.jpg (307200 bytes) left out"));
  free(raw);
  cam_event_free(ev);
}

static void
test_graph_json(void **state)
{
  char *to[] = {s_to1, s_to2};
  struct email_conf ec;
  struct cam_event *ev = make_event(3000);
  size_t len = 0;
  char *js;
  json_t *root, *msg, *att;
  gsize dlen;
  guchar *bytes;

  (void)state;
  make_conf(&ec, to);
  ec.nto = 2;
  js = email_graph_json(&ec, ev, &len);
  root = json_loads(js, 0, NULL);
  assert_non_null(root);
  msg = json_object_get(root, "message");
  assert_string_equal(json_string_value(json_object_get(msg, "subject")),
                      "Gartenhütte: motion at 14:30");
  assert_int_equal(json_array_size(json_object_get(msg, "toRecipients")),
                   2);
  assert_true(json_is_false(json_object_get(root, "saveToSentItems")));
  att = json_array_get(json_object_get(msg, "attachments"), 0);
  assert_string_equal(json_string_value(json_object_get(att,
                                                        "@odata.type")),
                      "#microsoft.graph.fileAttachment");
  bytes = g_base64_decode(json_string_value(json_object_get(att,
                                                            "contentBytes")),
                          &dlen);
  assert_int_equal(dlen, 3000);
  assert_memory_equal(bytes, ev->att[0].data, 3000);
  g_free(bytes);
  json_decref(root);
  free(js);
  cam_event_free(ev);
  /* Over Graph's 4 MB the picture stays out. */
  ev = make_event(5 * 1024 * 1024);
  js = email_graph_json(&ec, ev, &len);
  assert_true(len < EMAIL_GRAPH_MAX);
  assert_non_null(strstr(js, "left out"));
  free(js);
  cam_event_free(ev);
}

static void
test_token_file(void **state)
{
  char path[128], err[256];
  struct token t = {0}, u = {0};
  struct stat st;

  (void)state;
  snprintf(path, sizeof(path), "%s/acct.token", tmpdir);
  t.access_token = strdup("at-1");
  t.refresh_token = strdup("rt-1");
  t.expires_at = 1900000000;
  assert_int_equal(token_save(path, &t, err, sizeof(err)), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(token_load(path, &u, err, sizeof(err)), 0);
  assert_string_equal(u.access_token, "at-1");
  assert_string_equal(u.refresh_token, "rt-1");
  assert_int_equal(u.expires_at, 1900000000);
  assert_int_equal(u.needs_login, 0);
  chmod(path, 0644);
  assert_int_equal(token_load(path, &u, err, sizeof(err)), -1);
  assert_non_null(strstr(err, "0600"));
  assert_null(u.access_token);
  unlink(path);
  assert_int_equal(token_load(path, &u, err, sizeof(err)), -1);
  token_clear(&t);
  token_clear(&u);
}

static void
test_token_parse(void **state)
{
  struct token t = {0};
  char err[256];
  const char *ok = "{\"access_token\":\"at-2\",\"expires_in\":3599,"
                   "\"refresh_token\":\"rt-2\"}";
  const char *keep = "{\"access_token\":\"at-3\",\"expires_in\":\"60\"}";

  (void)state;
  t.refresh_token = strdup("rt-1");
  assert_int_equal(token_parse(ok, strlen(ok), 200, 1000, &t, err,
                               sizeof(err)), TOKEN_OK);
  assert_string_equal(t.access_token, "at-2");
  assert_string_equal(t.refresh_token, "rt-2");
  assert_int_equal(t.expires_at, 4599);
  assert_int_equal(token_parse(keep, strlen(keep), 200, 1000, &t, err,
                               sizeof(err)), TOKEN_OK);
  assert_string_equal(t.refresh_token, "rt-2");   /* not rotated: kept */
  assert_int_equal(t.expires_at, 1060);
#define P(body, status, want) \
  assert_int_equal(token_parse(body, strlen(body), status, 0, &t, err, \
                               sizeof(err)), want)
  P("{\"error\":\"authorization_pending\"}", 400, TOKEN_PENDING);
  P("{\"error\":\"slow_down\"}", 400, TOKEN_SLOW_DOWN);
  P("{\"error\":\"expired_token\"}", 400, TOKEN_EXPIRED);
  P("{\"error\":\"access_denied\"}", 400, TOKEN_DENIED);
  P("{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS1\"}", 400,
    TOKEN_INVALID_GRANT);
  assert_non_null(strstr(err, "invalid_grant: AADSTS1"));
  P("{\"error\":\"invalid_client\"}", 401, TOKEN_REFUSED);
  P("{\"error\":\"server_error\"}", 500, TOKEN_TRANSIENT);
  P("<html>bad gateway</html>", 502, TOKEN_TRANSIENT);
  P("{\"token_type\":\"Bearer\"}", 200, TOKEN_TRANSIENT);
#undef P
  assert_string_equal(t.access_token, "at-3");
  token_clear(&t);
}

static void
test_token_form(void **state)
{
  struct oauth_conf oc;
  GString *f;

  (void)state;
  memset(&oc, 0, sizeof(oc));
  oc.provider = OAUTH_MICROSOFT;
  oc.flow = OAUTH_FLOW_DEVICE;
  oc.client_id = s_cid;
  oc.scope = s_scope_smtp;
  f = token_refresh_form(&oc, "r+t/=");
  assert_string_equal(f->str, "grant_type=refresh_token&refresh_token="
                      "r%2Bt%2F%3D&client_id=cid&scope=https%3A%2F%2F"
                      "outlook.office.com%2FSMTP.Send%20offline_access");
  token_form_free(f);
  oc.flow = OAUTH_FLOW_CLIENT_CREDENTIALS;
  oc.client_secret = s_sec;
  oc.scope = s_scope_graph;
  f = token_refresh_form(&oc, NULL);
  assert_non_null(strstr(f->str, "grant_type=client_credentials&client_id"
                         "=cid&client_secret=sec&scope="));
  token_form_free(f);
}

static struct config *
load(const char *yaml, char *err, size_t errsz)
{
  char path[128];
  FILE *f;

  snprintf(path, sizeof(path), "%s/c.yaml", tmpdir);
  f = fopen(path, "w");
  fputs(yaml, f);
  fclose(f);
  return config_load(path, err, errsz);
}

#define HEAD "cameras: [{id: c1}]\nbackends:\n"
#define TAIL "rules: [{backends: [m]}]\n"

static void
test_config_defaults(void **state)
{
  char err[4096];
  struct config *cfg;
  const struct email_conf *ec;

  (void)state;
  cfg = load(HEAD "  - {name: m, type: email, transport: smtp_xoauth2,\n"
             "     from: a@b.example, to: [c@d.example],\n"
             "     oauth: {client_id: x, token_file: /tmp/t}}\n" TAIL,
             err, sizeof(err));
  assert_non_null(cfg);
  ec = &cfg->backends[0].u.email;
  assert_string_equal(ec->host, "smtp.office365.com");
  assert_int_equal(ec->port, 587);
  assert_int_equal(ec->tls, EMAIL_TLS_STARTTLS);
  assert_string_equal(ec->user, "a@b.example");
  assert_int_equal(ec->oauth.flow, OAUTH_FLOW_DEVICE);
  assert_string_equal(ec->oauth.scope,
                      "https://outlook.office.com/SMTP.Send offline_access");
  assert_string_equal(ec->oauth.token_url, "https://login.microsoftonline"
                      ".com/common/oauth2/v2.0/token");
  assert_string_equal(ec->oauth.device_code_url, "https://login."
                      "microsoftonline.com/common/oauth2/v2.0/devicecode");
  assert_int_equal(ec->oauth.refresh_margin, 300);
  assert_int_equal(ec->oauth.refresh_every, 86400);
  config_unref(cfg);
  cfg = load(HEAD "  - {name: m, type: email, transport: smtp_xoauth2,\n"
             "     tls: implicit, from: a@gmail.com, to: [c@d.example],\n"
             "     oauth: {provider: google, client_id: x,\n"
             "             client_secret: y, token_file: /tmp/t}}\n" TAIL,
             err, sizeof(err));
  assert_non_null(cfg);
  ec = &cfg->backends[0].u.email;
  assert_string_equal(ec->host, "smtp.gmail.com");
  assert_int_equal(ec->port, 465);
  assert_int_equal(ec->oauth.flow, OAUTH_FLOW_AUTH_CODE);
  assert_string_equal(ec->oauth.scope, "https://mail.google.com/");
  assert_string_equal(ec->oauth.token_url,
                      "https://oauth2.googleapis.com/token");
  config_unref(cfg);
}

static void
test_config_errors(void **state)
{
  char err[4096];

  (void)state;
  assert_null(load(HEAD "  - {name: m, type: email, transport: smtp,\n"
                   "     from: nobody, to: []}\n" TAIL, err, sizeof(err)));
  assert_non_null(strstr(err, "backends[0].from: expected an e-mail "
                         "address"));
  assert_non_null(strstr(err, "backends[0].host: expected the SMTP "
                         "server's host"));
  assert_non_null(strstr(err, "backends[0].to: expected at least one"));
  assert_null(load(HEAD "  - {name: m, type: email, transport: graph,\n"
                   "     from: a@b.example, to: [c@d.example],\n"
                   "     time_zone: Mars/Olympus,\n"
                   "     oauth: {flow: client_credentials}}\n" TAIL, err,
                   sizeof(err)));
  assert_non_null(strstr(err, "time_zone: expected a time zone"));
  assert_non_null(strstr(err, "expected oauth.client_id"));
  assert_non_null(strstr(err, "expected oauth.client_secret"));
}

static int
setup(void **state)
{
  (void)state;
  g_mime_init();
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/camgate-email-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int
teardown(void **state)
{
  char path[128];

  (void)state;
  snprintf(path, sizeof(path), "%s/c.yaml", tmpdir);
  unlink(path);
  rmdir(tmpdir);
  return 0;
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_message),
    cmocka_unit_test(test_folded_and_no_reply_to),
    cmocka_unit_test(test_size_budget),
    cmocka_unit_test(test_graph_json),
    cmocka_unit_test(test_token_file),
    cmocka_unit_test(test_token_parse),
    cmocka_unit_test(test_token_form),
    cmocka_unit_test(test_config_defaults),
    cmocka_unit_test(test_config_errors),
  };

  return cmocka_run_group_tests(tests, setup, teardown);
}
