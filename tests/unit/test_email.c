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
#include <turbojpeg.h>
#include <unistd.h>

#include "backends/email.h"
#include "config/config.h"
#include "gateway/notice.h"
#include "gateway/snapshot.h"
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

/* A w x h JPEG of noise at quality 95: large for its size. */
static unsigned char *
make_jpeg(int w, int h, size_t *len)
{
  unsigned char *pix = malloc((size_t)w * (size_t)h * 3);
  unsigned char *buf = NULL, *r;
  unsigned long n = 0;
  tjhandle tj = tjInitCompress();
  uint32_t x = 12345;

  assert_non_null(pix);
  assert_non_null(tj);
  for (size_t i = 0; i < (size_t)w * (size_t)h * 3; i++) {
    x = x * 1103515245u + 12345u;
    pix[i] = (unsigned char)(x >> 24);
  }
  assert_int_equal(tjCompress2(tj, pix, w, 0, h, TJPF_RGB, &buf, &n,
                               TJSAMP_444, 95, 0), 0);
  r = malloc(n);
  assert_non_null(r);
  memcpy(r, buf, n);
  *len = n;
  tjFree(buf);
  tjDestroy(tj);
  free(pix);
  return r;
}

static struct cam_event *
make_photo_event(int64_t id, size_t *jpeg_len)
{
  struct cam_event *ev = make_event(10);
  unsigned char *jpeg = make_jpeg(1280, 720, jpeg_len);

  ev->id = id;
  cam_event_add_attachment_owned(ev, "big.jpg", "image/jpeg", jpeg,
                                 *jpeg_len);
  return ev;
}

/* The attachment's bytes and size as the message carries it. */
static GByteArray *
message_part(GMimeMessage *m, const char *filename)
{
  GMimeMultipart *mp = GMIME_MULTIPART(g_mime_message_get_mime_part(m));
  GMimeStream *out = g_mime_stream_mem_new();
  GByteArray *ba = g_byte_array_new();

  for (int i = 0; i < g_mime_multipart_get_count(mp); i++) {
    GMimeObject *o = g_mime_multipart_get_part(mp, i);
    const char *fn = GMIME_IS_PART(o)
                       ? g_mime_part_get_filename(GMIME_PART(o)) : NULL;

    if (fn == NULL || strcmp(fn, filename) != 0)
      continue;
    g_mime_data_wrapper_write_to_stream(
      g_mime_part_get_content(GMIME_PART(o)), out);
    break;
  }
  g_byte_array_append(ba, g_mime_stream_mem_get_byte_array(
                            GMIME_STREAM_MEM(out))->data,
                      g_mime_stream_mem_get_byte_array(
                        GMIME_STREAM_MEM(out))->len);
  g_object_unref(out);
  return ba;
}

static void
test_thumbnail(void **state)
{
  char *to[] = {s_to1};
  char box[] = "640x480";
  struct email_conf ec;
  size_t jlen = 0, len = 0;
  struct cam_event *ev = make_photo_event(77, &jlen);
  char *raw, note[128];
  gchar *text;
  GMimeMessage *m;
  GByteArray *ba;
  int w, h, samp;

  (void)state;
  make_conf(&ec, to);
  ec.snapshot = box;
  ec.snapshot_w = 640;
  ec.snapshot_h = 480;
  ec.quality = 75;
  ec.thumbnail_over = jlen / 2;
  raw = email_build_message(&ec, ev, &len);
  snprintf(note, sizeof(note), "[big.jpg (%zu bytes) sent as a 640x360 "
           "thumbnail", jlen);
  m = parse(raw, len);
  ba = message_part(m, "big.jpg");
  assert_true(ba->len > 0 && ba->len < jlen / 2);
  assert_int_equal(snapshot_jpeg_info(ba->data, ba->len, &w, &h, &samp,
                                      NULL, 0), 0);
  assert_int_equal(w, 640);
  assert_int_equal(h, 360);
  text = g_mime_text_part_get_text(GMIME_TEXT_PART(
    g_mime_multipart_get_part(GMIME_MULTIPART(
      g_mime_message_get_mime_part(m)), 0)));
  assert_non_null(strstr(text, note));
  g_free(text);
  g_byte_array_unref(ba);
  g_object_unref(m);
  free(raw);
  /* Below thumbnail_over the picture goes as it came. */
  ec.thumbnail_over = jlen + 1;
  raw = email_build_message(&ec, ev, &len);
  m = parse(raw, len);
  ba = message_part(m, "big.jpg");
  assert_int_equal(ba->len, jlen);
  assert_memory_equal(ba->data, ev->att[1].data, jlen);
  assert_null(strstr(raw, "thumbnail"));
  g_byte_array_unref(ba);
  g_object_unref(m);
  free(raw);
  /* Over the size budget (Graph's, here max_size's) the thumbnail goes
   * before the picture would be dropped; a box of none drops it. */
  ec.thumbnail_over = 0;
  ec.max_size = 64 * 1024 + jlen / 2;
  raw = email_graph_json(&ec, ev, &len);
  assert_non_null(strstr(raw, "sent as a 640x360 thumbnail"));
  assert_null(strstr(raw, "left out"));
  free(raw);
  ec.snapshot_w = ec.snapshot_h = -1;
  raw = email_graph_json(&ec, ev, &len);
  assert_non_null(strstr(raw, "big.jpg ("));
  assert_non_null(strstr(raw, "left out"));
  free(raw);
  cam_event_free(ev);
  snapshot_cache_clear();
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
  struct email_content c;
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
  /* Over Graph's 4 MB the picture stays out of sendMail... */
  ev = make_event(5 * 1024 * 1024);
  js = email_graph_json(&ec, ev, &len);
  assert_true(len < EMAIL_GRAPH_MAX);
  assert_non_null(strstr(js, "left out"));
  free(js);
  /* ...and goes by upload session on a draft instead. */
  js = email_graph_draft(&ec, ev, &c, &len);
  assert_non_null(js);
  assert_int_equal(c.attach[0], EMAIL_ATTACH_UPLOAD);
  assert_true(len < 64 * 1024);
  assert_null(strstr(js, "left out"));
  assert_null(strstr(js, "saveToSentItems"));
  root = json_loads(js, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(root, "attachments")),
                   0);
  json_decref(root);
  free(js);
  js = email_graph_session_json(&ev->att[0], &len);
  assert_non_null(strstr(js, "\"size\":5242880"));
  assert_non_null(strstr(js, "\"attachmentType\":\"file\""));
  free(js);
  email_content_clear(&c);
  cam_event_free(ev);
  /* Small pictures need no draft. */
  ev = make_event(3000);
  assert_null(email_graph_draft(&ec, ev, &c, &len));
  assert_null(c.attach);
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
  assert_int_equal(ec->thumbnail_over, 0);
  assert_int_equal(ec->mode, EMAIL_MODE_COMPOSE);
  assert_false(config_keeps_raw(cfg));
  assert_int_equal(ec->snapshot_w, 640);
  assert_int_equal(ec->snapshot_h, 480);
  assert_int_equal(ec->quality, 75);
  config_unref(cfg);
  cfg = load(HEAD "  - {name: m, type: email, transport: smtp_xoauth2,\n"
             "     tls: implicit, from: a@gmail.com, to: [c@d.example],\n"
             "     thumbnail_over: 1M, snapshot: 320x240, mode: forward,\n"
             "     oauth: {provider: google, client_id: x,\n"
             "             client_secret: y, token_file: /tmp/t}}\n" TAIL,
             err, sizeof(err));
  assert_non_null(cfg);
  ec = &cfg->backends[0].u.email;
  assert_string_equal(ec->host, "smtp.gmail.com");
  assert_int_equal(ec->port, 465);
  assert_int_equal(ec->oauth.flow, OAUTH_FLOW_AUTH_CODE);
  assert_string_equal(ec->oauth.scope, "https://mail.google.com/");
  assert_int_equal(ec->thumbnail_over, 1024 * 1024);
  assert_int_equal(ec->snapshot_w, 320);
  assert_int_equal(ec->mode, EMAIL_MODE_FORWARD);
  assert_true(config_keeps_raw(cfg));
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

static void
test_forward(void **state)
{
  static const char head[] =
    "Return-Path: <cam@cameras.example>\r\n"
    "From: \"Cam\" <cam@cameras.example>\r\n"
    "sender: cam@cameras.example\r\n"
    "To: camera-inbox@example.org\r\n"
    "Subject: Motion\r\n alarm folded\r\n"
    "Reply-To: other@example.org\r\n"
    "Fromage: kept\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"b1\"\r\n";
  static const char body[] =
    "--b1\r\nContent-Type: text/plain\r\n\r\nmoved\r\n"
    "--b1\r\nContent-Type: image/jpeg\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n/9j/4AAQ\r\n--b1--\r\n";
  char *to[] = {s_to1, s_to2};
  struct email_conf ec;
  struct cam_event *ev = make_event(10);
  GString *raw = g_string_new(head);
  size_t len = 0;
  char *out, *sep;

  (void)state;
  make_conf(&ec, to);
  ec.nto = 2;
  assert_null(email_forward_message(&ec, ev, 0, &len));
  g_string_append(raw, "\r\n");
  g_string_append(raw, body);
  cam_event_set_raw(ev, raw->str, raw->len);
  out = email_forward_message(&ec, ev, 0, &len);
  assert_non_null(out);
  assert_int_equal(strlen(out), len);
  sep = strstr(out, "\r\n\r\n");
  assert_non_null(sep);
  /* The body byte for byte; the header without the camera's sender. */
  assert_string_equal(sep + 4, body);
  *sep = '\0';
  assert_non_null(strstr(out, "From: camgate <alerts@contoso.example>\r\n"));
  assert_non_null(strstr(out, "Reply-To: cam@cameras.example\r\n"));
  assert_null(strstr(out, "other@example.org"));
  assert_null(strstr(out, "Return-Path"));
  assert_null(strstr(out, "sender:"));
  assert_null(strstr(out, "\"Cam\""));
  assert_non_null(strstr(out, "\r\nTo: camera-inbox@example.org\r\n"));
  assert_non_null(strstr(out, "\r\nSubject: Motion\r\n alarm folded\r\n"));
  assert_non_null(strstr(out, "\r\nFromage: kept\r\n"));
  assert_non_null(strstr(out, "\r\nX-Camgate-Event: 42\r\n"));
  assert_non_null(strstr(out, "\r\nDate: "));
  assert_non_null(strstr(out, "\r\nMessage-ID: <camgate.42."));
  free(out);
  /* For Graph the recipients are the configured ones. */
  out = email_forward_message(&ec, ev, 1, &len);
  assert_non_null(strstr(out, "To: owner@example.net,\r\n "
                         "second@example.net\r\n"));
  assert_null(strstr(out, "camera-inbox"));
  free(out);
  /* Larger than max_size: NULL, the caller composes a mail instead. */
  ec.max_size = raw->len;
  assert_null(email_forward_message(&ec, ev, 0, &len));
  g_string_free(raw, TRUE);
  cam_event_free(ev);
}

/* A notice goes to every backend but the one it is about, past rules
 * and rate limits. */
static void
test_notice_routes(void **state)
{
  char err[4096];
  struct config *cfg;
  struct route rt[8];
  struct cam_event *ev;
  size_t n;

  (void)state;
  cfg = load(HEAD "  - {name: m, type: email, transport: smtp_xoauth2,\n"
             "     from: a@b.example, to: [c@d.example],\n"
             "     oauth: {client_id: x, token_file: /tmp/t}}\n"
             "  - {name: ha, type: mqtt, host: 127.0.0.1}\n"
             "  - {name: phone, type: ntfy, url: 'http://127.0.0.1:1',\n"
             "     topic: t, defaults: {cooldown: 1h}}\n"
             "rules: [{drop: true}]\n", err, sizeof(err));
  assert_non_null(cfg);
  n = notice_routes(cfg, "m", rt, 8);
  assert_int_equal(n, 2);
  assert_string_equal(rt[0].backend, "ha");
  assert_string_equal(rt[1].backend, "phone");
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(rt[i].rule, NOTICE_RULE);
    assert_int_equal(rt[i].limited, 0);
  }
  assert_int_equal(notice_routes(cfg, "x", rt, 8), 3);
  assert_int_equal(notice_routes(cfg, "m", rt, 1), 1);
  config_unref(cfg);
  ev = notice_event("needs_login", "m needs a new login", "text");
  assert_string_equal(ev->camera, "camgate");
  assert_string_equal(ev->source, "camgate");
  assert_string_equal(ev->kind, "needs_login");
  assert_string_equal(ev->title, "m needs a new login");
  assert_true(ev->recv_time > 0);
  cam_event_free(ev);
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
    cmocka_unit_test(test_thumbnail),
    cmocka_unit_test(test_graph_json),
    cmocka_unit_test(test_token_file),
    cmocka_unit_test(test_token_parse),
    cmocka_unit_test(test_token_form),
    cmocka_unit_test(test_config_defaults),
    cmocka_unit_test(test_config_errors),
    cmocka_unit_test(test_notice_routes),
    cmocka_unit_test(test_forward),
  };

  return cmocka_run_group_tests(tests, setup, teardown);
}
