/* email.c - the e-mail backend: alerts onward by SMTP (a password, or
 * OAuth 2.0 with XOAUTH2) or by Microsoft Graph sendMail.
 *
 * Every transfer is a libcurl easy handle run by gateway/http.c on the
 * event loop. Deliveries go one at a time, oldest first, which keeps a
 * camera's alerts in order; libcurl keeps the authenticated SMTP
 * connection in its cache, so a burst reuses it. OAuth tokens come from
 * gateway/token.c; while there is no valid access token the backend has
 * no capacity and deliveries wait in the spool.
 *
 * Outcomes: delivered (250 after the data, Graph 202); a 4xx reply, a
 * refused connection, a timeout or a TLS failure is retried with the
 * scheduler's backoff; a 5xx reply to the envelope or the data fails the
 * delivery with the server's text. A refused login is the account's
 * problem, not the alert's: with XOAUTH2 the token is refreshed once and
 * the alert sent again; after that (and for passwords) it is retried, so
 * nothing is lost while someone fixes the account. Gmail answers a bad
 * token with a 334 carrying JSON and waits for an empty line; libcurl
 * 7.88 takes any reply but 235 there as a refused login
 * (CURLE_LOGIN_DENIED, response code 334) and drops the connection
 * without that line, which Gmail survives.
 *
 * Graph takes 4 MB a request: with an attachment of 3 MB or more the
 * delivery is a chain of transfers (enum email_step) on one email_dlv:
 * a draft, then per large attachment an upload session and PUTs of
 * ranges, then send; a failure anywhere retries the whole delivery.
 * Mode forward sends the camera's own message (email_forward_message)
 * instead of a composed one. On entering needs-login the backend asks
 * the gateway for a notice through the other backends (set_notice). */
#include "backends/email.h"

#include <event2/event.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "gateway/http.h"
#include "gateway/log.h"
#include "gateway/token.h"

#define EMAIL_ERR_LEN 256
#define EMAIL_REPLY_LEN 200
#define EMAIL_CONNECT_TIMEOUT_S 30L
#define EMAIL_RATE_SLOTS 600      /* max_per_minute's upper bound */

/* Graph upload chunks must be multiples of 320 KiB. */
#define EMAIL_UPLOAD_CHUNK (10u * 320u * 1024u)

struct email;

enum email_step {
  EMAIL_STEP_SEND_MAIL,     /* SMTP, or Graph sendMail: one transfer */
  EMAIL_STEP_DRAFT,         /* POST .../messages */
  EMAIL_STEP_SESSION,       /* POST .../attachments/createUploadSession */
  EMAIL_STEP_UPLOAD,        /* PUT a range to the session's URL */
  EMAIL_STEP_SEND           /* POST .../messages/{id}/send */
};

struct email_dlv {
  struct email *e;
  int64_t ev_id;
  char *payload;            /* the message, or the Graph JSON */
  int graph_mime;           /* Graph: payload is base64 MIME, not JSON */
  /* Graph with upload sessions: draft, a session and PUTs per large
   * attachment, send. */
  const struct cam_event *ev;   /* valid until done() */
  int step;                 /* enum email_step */
  struct email_content gc;  /* which attachments are uploaded */
  char *msg_id;             /* the draft's id */
  char *upload_url;         /* the current upload session */
  size_t up_i;              /* the attachment being uploaded */
  size_t up_off;            /* bytes of it the server has */
  size_t chunk;             /* bytes in the PUT under way */
  char *body;               /* the current request's body, or NULL */
  size_t body_len;
  size_t len;
  size_t off;               /* bytes handed to curl so far */
  CURL *easy;
  struct curl_slist *list;  /* recipients, or HTTP headers */
  GString *resp;            /* Graph's answer */
  char reply[EMAIL_REPLY_LEN]; /* the SMTP server's last reply */
  int refreshed;            /* the token was refreshed for this one */
  int waiting_token;
  struct event *timer;      /* a deferred answer */
  enum deliver_status st;
  char error[EMAIL_ERR_LEN];
  deliver_done_fn done;
  void *ctx;
  struct email_dlv *next;
};

struct email {
  const char *name;
  const struct email_conf *ec;
  struct event_base *base;
  struct http *http;
  struct token_keeper *keeper;  /* NULL for transport smtp */
  enum token_state login_state; /* as last seen, to see it change */
  const char *config_path;
  backend_notice_fn notice;     /* the gateway's hook, or NULL */
  void *notice_arg;
  struct email_dlv *dlvs;
  int ndlvs;
  int64_t sent[EMAIL_RATE_SLOTS]; /* mono ms of recent sends, a ring */
  size_t sent_next;
};

static void email_start(struct email_dlv *d);

static void
email_list_free(struct curl_slist *l)
{
  for (struct curl_slist *p = l; p; p = p->next)
    explicit_bzero(p->data, strlen(p->data));
  curl_slist_free_all(l);
}

static void
email_xfer_free(struct email_dlv *d)
{
  if (d->easy) {
    http_cancel(d->e->http, d->easy);
    curl_easy_cleanup(d->easy);
    d->easy = NULL;
  }
  email_list_free(d->list);
  d->list = NULL;
  if (d->resp)
    g_string_free(d->resp, TRUE);
  d->resp = NULL;
  d->off = 0;
  d->reply[0] = '\0';
}

static void
email_unlink(struct email *e, struct email_dlv *d)
{
  struct email_dlv **pp = &e->dlvs;

  while (*pp && *pp != d)
    pp = &(*pp)->next;
  if (*pp) {
    *pp = d->next;
    e->ndlvs--;
  }
}

/* Answers now; never from inside email_deliver(). */
static void
email_finish(struct email_dlv *d, enum deliver_status st, const char *err)
{
  deliver_done_fn done = d->done;
  void *ctx = d->ctx;

  email_xfer_free(d);
  email_unlink(d->e, d);
  if (d->timer)
    event_free(d->timer);
  free(d->payload);
  email_content_clear(&d->gc);
  free(d->msg_id);
  free(d->upload_url);
  free(d->body);
  free(d);
  done(ctx, st, 0, 0, err);
}

static void
email_answer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct email_dlv *d = arg;
  char err[EMAIL_ERR_LEN];

  (void)fd;
  (void)what;
  snprintf(err, sizeof(err), "%s", d->error);
  email_finish(d, d->st, err[0] ? err : NULL);
}

/* Answers on a later turn of the loop. */
static void
email_answer_later(struct email_dlv *d, enum deliver_status st,
                   const char *err)
{
  struct timeval tv = {0, 0};

  d->st = st;
  snprintf(d->error, sizeof(d->error), "%s", err ? err : "");
  if (d->timer == NULL)
    d->timer = evtimer_new(d->e->base, email_answer_cb, d);
  evtimer_add(d->timer, &tv);
}

static size_t
email_read_cb(char *buf, size_t size, size_t n, void *arg)
{
  struct email_dlv *d = arg;
  size_t room = size * n;
  size_t left = d->len - d->off;

  if (room > left)
    room = left;
  memcpy(buf, d->payload + d->off, room);
  d->off += room;
  return room;
}

/* Keeps the server's last reply line. Only what the server sends is
 * looked at: what camgate sends holds the AUTH data. */
static int
email_debug_cb(CURL *easy, curl_infotype type, char *data, size_t size,
               void *arg)
{
  struct email_dlv *d = arg;
  size_t n = size;

  (void)easy;
  if (type != CURLINFO_HEADER_IN)
    return 0;
  while (n > 0 && (data[n - 1] == '\n' || data[n - 1] == '\r'))
    n--;
  if (n >= 3)
    log_escape(d->reply, sizeof(d->reply), data, n);
  return 0;
}

static char *
email_smtp_url(const struct email_conf *ec)
{
  const char *scheme = ec->tls == EMAIL_TLS_IMPLICIT ? "smtps" : "smtp";
  int v6 = strchr(ec->host, ':') != NULL;
  size_t n = strlen(ec->host) + 32;
  char *url = xmalloc(n);

  snprintf(url, n, "%s://%s%s%s:%d", scheme, v6 ? "[" : "", ec->host,
           v6 ? "]" : "", ec->port);
  return url;
}

static void
email_common_opts(struct email_dlv *d, CURL *c)
{
  const struct email_conf *ec = d->e->ec;
  long connect = ec->timeout < EMAIL_CONNECT_TIMEOUT_S
                   ? (long)ec->timeout : EMAIL_CONNECT_TIMEOUT_S;

  curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)ec->timeout);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, connect);
  if (ec->ca_file)
    curl_easy_setopt(c, CURLOPT_CAINFO, ec->ca_file);
  curl_easy_setopt(c, CURLOPT_VERBOSE, 1L);
  curl_easy_setopt(c, CURLOPT_DEBUGFUNCTION, email_debug_cb);
  curl_easy_setopt(c, CURLOPT_DEBUGDATA, d);
}

static void
email_smtp_setup(struct email_dlv *d, CURL *c, const char *token)
{
  const struct email_conf *ec = d->e->ec;
  char *url = email_smtp_url(ec);

  curl_easy_setopt(c, CURLOPT_URL, url);
  free(url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  curl_easy_setopt(c, CURLOPT_USE_SSL, ec->tls == EMAIL_TLS_NONE
                                         ? (long)CURLUSESSL_NONE
                                         : (long)CURLUSESSL_ALL);
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, ec->from);
  for (size_t i = 0; i < ec->nto; i++)
    d->list = curl_slist_append(d->list, ec->to[i]);
  for (size_t i = 0; i < ec->ncc; i++)
    d->list = curl_slist_append(d->list, ec->cc[i]);
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, d->list);
  /* curl 7.88 spells it with three Ls. */
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT_ALLLOWFAILS, 1L);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, email_read_cb);
  curl_easy_setopt(c, CURLOPT_READDATA, d);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)d->len);
  if (token) {
    curl_easy_setopt(c, CURLOPT_USERNAME, ec->user);
    curl_easy_setopt(c, CURLOPT_XOAUTH2_BEARER, token);
    curl_easy_setopt(c, CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2");
    curl_easy_setopt(c, CURLOPT_SASL_IR, 1L);
  } else if (ec->password) {
    curl_easy_setopt(c, CURLOPT_USERNAME, ec->user);
    curl_easy_setopt(c, CURLOPT_PASSWORD, ec->password);
  }
}

/* graph_url/me or graph_url/users/{mailbox}, then suffix. */
static char *
email_graph_url(const struct email_conf *ec, const char *suffix)
{
  GString *u = g_string_new(ec->graph_url);
  char *r;

  while (u->len && u->str[u->len - 1] == '/')
    g_string_truncate(u, u->len - 1);
  if (ec->oauth.flow == OAUTH_FLOW_CLIENT_CREDENTIALS) {
    gchar *mb = g_uri_escape_string(ec->mailbox, "@", FALSE);

    g_string_append_printf(u, "/users/%s", mb);
    g_free(mb);
  } else {
    g_string_append(u, "/me");
  }
  g_string_append(u, suffix);
  r = xstrdup(u->str);
  g_string_free(u, TRUE);
  return r;
}

/* The URL of the current Graph step. */
static char *
email_step_url(const struct email_dlv *d)
{
  const struct email_conf *ec = d->e->ec;
  gchar *id = d->msg_id ? g_uri_escape_string(d->msg_id, NULL, FALSE)
                        : NULL;
  GString *sfx = g_string_new(NULL);
  char *url;

  if (d->step == EMAIL_STEP_SEND_MAIL)
    g_string_assign(sfx, "/sendMail");
  else if (d->step == EMAIL_STEP_DRAFT)
    g_string_assign(sfx, "/messages");
  else if (d->step == EMAIL_STEP_SESSION)
    g_string_printf(sfx, "/messages/%s/attachments/createUploadSession",
                    id);
  else
    g_string_printf(sfx, "/messages/%s/send", id);
  url = d->step == EMAIL_STEP_UPLOAD ? xstrdup(d->upload_url)
                                     : email_graph_url(ec, sfx->str);
  g_string_free(sfx, TRUE);
  g_free(id);
  return url;
}

/* A PUT of the next range of the attachment being uploaded. The upload
 * URL carries its own authorization: no token goes with it. */
static void
email_upload_setup(struct email_dlv *d, CURL *c)
{
  const struct attachment *a = &d->ev->att[d->up_i];
  char range[96];

  d->chunk = a->len - d->up_off;
  if (d->chunk > EMAIL_UPLOAD_CHUNK)
    d->chunk = EMAIL_UPLOAD_CHUNK;
  snprintf(range, sizeof(range), "Content-Range: bytes %zu-%zu/%zu",
           d->up_off, d->up_off + d->chunk - 1, a->len);
  d->list = curl_slist_append(d->list, range);
  d->list = curl_slist_append(d->list,
                              "Content-Type: application/octet-stream");
  d->list = curl_slist_append(d->list, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, d->list);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, a->data + d->up_off);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)d->chunk);
}

static void
email_graph_setup(struct email_dlv *d, CURL *c, const char *token)
{
  char *url = email_step_url(d);
  GString *auth = g_string_new("Authorization: Bearer ");
  const char *body = d->body ? d->body : d->payload;
  size_t len = d->body ? d->body_len : d->len;

  curl_easy_setopt(c, CURLOPT_URL, url);
  free(url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  d->resp = g_string_sized_new(256);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_collect_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, d->resp);
  if (d->step == EMAIL_STEP_UPLOAD) {
    g_string_free(auth, TRUE);
    email_upload_setup(d, c);
    return;
  }
  g_string_append(auth, token);
  d->list = curl_slist_append(d->list, auth->str);
  explicit_bzero(auth->str, auth->len);
  g_string_free(auth, TRUE);
  d->list = curl_slist_append(d->list, d->graph_mime
                                         ? "Content-Type: text/plain"
                                         : "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, d->list);
  if (d->step == EMAIL_STEP_SEND) {
    body = "";
    len = 0;
  }
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
}

/* The server refused the token: refresh it once, then send again. */
static void
email_auth_refused(struct email_dlv *d, const char *err)
{
  struct email *e = d->e;

  if (e->keeper == NULL || d->refreshed) {
    email_finish(d, DELIVER_RETRY, err);
    return;
  }
  d->refreshed = 1;
  d->waiting_token = 1;
  email_xfer_free(d);
  token_keeper_reject(e->keeper);
  if (token_keeper_state(e->keeper) == TOKEN_STATE_NEEDS_LOGIN) {
    d->waiting_token = 0;
    email_finish(d, DELIVER_RETRY, "the account needs a new login");
  }
}

static void
email_smtp_done(struct email_dlv *d, CURLcode rc, long code)
{
  char err[EMAIL_ERR_LEN];

  if (rc == CURLE_OK) {
    email_finish(d, DELIVER_DONE, NULL);
    return;
  }
  snprintf(err, sizeof(err), "%s%s%s", curl_easy_strerror(rc),
           d->reply[0] ? ": " : "", d->reply);
  if (rc == CURLE_LOGIN_DENIED) {
    email_auth_refused(d, err);
    return;
  }
  email_finish(d, code >= 500 && code <= 599 ? DELIVER_FAILED
                                             : DELIVER_RETRY, err);
}

/* "HTTP 400 ErrorInvalidRecipients: ..." from Graph's error JSON. */
static void
email_graph_error(const struct email_dlv *d, long status, char *err,
                  size_t errsz)
{
  json_error_t jerr;
  json_t *root = d->resp && d->resp->len
                   ? json_loadb(d->resp->str, d->resp->len, 0, &jerr)
                   : NULL;
  json_t *eo = json_object_get(root, "error");
  const char *code = json_string_value(json_object_get(eo, "code"));
  const char *msg = json_string_value(json_object_get(eo, "message"));
  char esc[EMAIL_REPLY_LEN];

  esc[0] = '\0';
  if (msg)
    log_escape(esc, sizeof(esc), msg, strlen(msg));
  snprintf(err, errsz, "HTTP %ld %s%s%s", status, code ? code : "",
           msg ? ": " : "", esc);
  json_decref(root);
}

/* Returns a copy of the string member key of Graph's JSON answer. */
static char *
email_resp_string(const struct email_dlv *d, const char *key)
{
  json_error_t jerr;
  json_t *root = d->resp && d->resp->len
                   ? json_loadb(d->resp->str, d->resp->len, 0, &jerr)
                   : NULL;
  const char *v = json_string_value(json_object_get(root, key));
  char *r = v && v[0] ? xstrdup(v) : NULL;

  json_decref(root);
  return r;
}

/* The next attachment from index from that goes by upload session; its
 * session is the next step. Else sending the draft is. */
static void
email_upload_next(struct email_dlv *d, size_t from)
{
  free(d->body);
  d->body = NULL;
  for (size_t i = from; i < d->gc.nattach; i++) {
    if (d->gc.attach[i] != EMAIL_ATTACH_UPLOAD)
      continue;
    d->up_i = i;
    d->up_off = 0;
    d->body = email_graph_session_json(&d->ev->att[i], &d->body_len);
    d->step = EMAIL_STEP_SESSION;
    return;
  }
  d->step = EMAIL_STEP_SEND;
}

/* A step of the draft flow went through: on to the next. */
static void
email_graph_next(struct email_dlv *d)
{
  if (d->step == EMAIL_STEP_DRAFT) {
    d->msg_id = email_resp_string(d, "id");
    if (d->msg_id == NULL) {
      email_finish(d, DELIVER_RETRY, "Graph's draft answer has no id");
      return;
    }
    email_upload_next(d, 0);
  } else if (d->step == EMAIL_STEP_SESSION) {
    free(d->upload_url);
    d->upload_url = email_resp_string(d, "uploadUrl");
    if (d->upload_url == NULL) {
      email_finish(d, DELIVER_RETRY, "Graph's upload session has no URL");
      return;
    }
    d->step = EMAIL_STEP_UPLOAD;
  } else {
    d->up_off += d->chunk;
    if (d->up_off >= d->ev->att[d->up_i].len)
      email_upload_next(d, d->up_i + 1);
  }
  log_debug("email", "backend=%s event=%" PRId64 " step=%d upload=%zu "
            "offset=%zu", d->e->name, d->ev_id, d->step, d->up_i,
            d->up_off);
  email_xfer_free(d);
  email_start(d);
}

static void
email_graph_done(struct email_dlv *d, CURLcode rc, long status)
{
  char err[EMAIL_ERR_LEN];

  if (rc != CURLE_OK) {
    snprintf(err, sizeof(err), "%s", curl_easy_strerror(rc));
    email_finish(d, DELIVER_RETRY, err);
    return;
  }
  if (status >= 200 && status <= 299 && (d->step == EMAIL_STEP_SEND_MAIL ||
                                         d->step == EMAIL_STEP_SEND)) {
    email_finish(d, DELIVER_DONE, NULL);
    return;
  }
  if (status >= 200 && status <= 299) {
    email_graph_next(d);
    return;
  }
  email_graph_error(d, status, err, sizeof(err));
  if (status == 401) {
    email_auth_refused(d, err);
    return;
  }
  /* An upload session that ran out (404) starts over with a new draft. */
  if (status == 408 || status == 429 || status >= 500 ||
      d->step == EMAIL_STEP_UPLOAD)
    email_finish(d, DELIVER_RETRY, err);
  else
    email_finish(d, DELIVER_FAILED, err);
}

static void
email_xfer_done(void *arg, CURL *easy, CURLcode rc, long status)
{
  struct email_dlv *d = arg;

  (void)easy;
  log_debug("email", "backend=%s event=%" PRId64 " curl=%d status=%ld",
            d->e->name, d->ev_id, (int)rc, status);
  curl_easy_cleanup(d->easy);
  d->easy = NULL;
  if (d->e->ec->transport == EMAIL_GRAPH)
    email_graph_done(d, rc, status);
  else
    email_smtp_done(d, rc, status);
}

static void
email_start(struct email_dlv *d)
{
  struct email *e = d->e;
  const char *token = e->keeper ? token_keeper_access(e->keeper) : NULL;
  CURL *c;

  if (e->keeper && token == NULL) {
    email_answer_later(d, DELIVER_RETRY, "no valid access token");
    return;
  }
  c = d->easy = curl_easy_init();
  if (c == NULL)
    fatal("email: curl_easy_init failed");
  e->sent[e->sent_next] = mono_ms();
  e->sent_next = (e->sent_next + 1) % EMAIL_RATE_SLOTS;
  email_common_opts(d, c);
  if (e->ec->transport == EMAIL_GRAPH)
    email_graph_setup(d, c, token);
  else
    email_smtp_setup(d, c, token);
  if (http_start(e->http, c, email_xfer_done, d) < 0) {
    curl_easy_cleanup(c);
    d->easy = NULL;
    email_answer_later(d, DELIVER_RETRY, "curl refused the transfer");
  }
}

/* The refresh token was just refused: one notice through the other
 * backends, once each time the account enters needs-login (not at a
 * start that finds it there: the token file remembers the state). */
static void
email_login_notice(struct email *e)
{
  GString *title = g_string_new(NULL);
  GString *text = g_string_new(NULL);

  g_string_printf(title, "camgate: %s needs a new login: camgate oauth "
                  "login %s -c %s", e->name, e->name, e->config_path);
  g_string_printf(text, "The e-mail backend %s (%s) can no longer sign "
                  "in: its refresh token was refused (password changed, "
                  "access revoked or unused too long). Its alerts wait in "
                  "the spool; none is lost. Sign in again with:\n\n  "
                  "camgate oauth login %s -c %s\n", e->name, e->ec->from,
                  e->name, e->config_path);
  e->notice(e->notice_arg, "needs_login", title->str, text->str);
  g_string_free(title, TRUE);
  g_string_free(text, TRUE);
}

/* A refresh ended: deliveries that waited for it go on, or back to the
 * spool when there is still no token. */
static void
email_token_changed(void *arg)
{
  struct email *e = arg;
  struct email_dlv *d = e->dlvs;
  enum token_state st = token_keeper_state(e->keeper);

  if (st == TOKEN_STATE_NEEDS_LOGIN &&
      e->login_state != TOKEN_STATE_NEEDS_LOGIN && e->notice)
    email_login_notice(e);
  e->login_state = st;

  while (d) {
    struct email_dlv *next = d->next;

    if (d->waiting_token) {
      d->waiting_token = 0;
      if (token_keeper_access(e->keeper))
        email_start(d);
      else
        email_finish(d, DELIVER_RETRY, "token refresh failed");
    }
    d = next;
  }
}

static void *
email_open(const struct backend_conf *bc, const struct config *cfg,
           struct event_base *base, struct notify *n, char *err,
           size_t errsz)
{
  struct email *e = xcalloc(1, sizeof(*e));

  (void)n;
  (void)err;
  (void)errsz;
  e->name = bc->name;
  e->ec = &bc->u.email;
  e->config_path = cfg->path;
  e->base = base;
  e->http = http_new(base);
  if (e->ec->transport != EMAIL_SMTP)
    e->keeper = token_keeper_new(base, e->http, bc->name, cfg->path,
                                 &e->ec->oauth, e->ec->ca_file,
                                 email_token_changed, e);
  if (e->keeper)
    e->login_state = token_keeper_state(e->keeper);
  log_info("email", "backend=%s transport=%s msg=\"opened\"", e->name,
           e->ec->transport == EMAIL_GRAPH ? "graph"
           : e->ec->transport == EMAIL_SMTP ? "smtp" : "smtp_xoauth2");
  return e;
}

/* Providers cap sends per mailbox and minute (Exchange Online: 30); a
 * ring of the last max_per_minute send times keeps under the cap. */
static int
email_rate_ok(const struct email *e)
{
  int max = e->ec->max_per_minute;
  size_t oldest;

  if (max <= 0)
    return 1;
  oldest = (e->sent_next + EMAIL_RATE_SLOTS - (size_t)max) %
           EMAIL_RATE_SLOTS;
  return e->sent[oldest] == 0 || mono_ms() - e->sent[oldest] >= 60000;
}

static int
email_capacity(void *b)
{
  struct email *e = b;

  if (e->ndlvs > 0 || !email_rate_ok(e))
    return 0;
  if (e->keeper && token_keeper_access(e->keeper) == NULL)
    return 0;
  return 1;
}

/* Mode forward: the camera's own message (Graph takes it base64, as
 * MIME), or NULL to compose one: for events without it (stored before
 * the mode was set, camgate's own notices) or above max_size. */
static char *
email_forward_payload(const struct email *e, const struct cam_event *ev,
                      size_t *len)
{
  char *mime = email_forward_message(e->ec, ev,
                                     e->ec->transport == EMAIL_GRAPH, len);
  gchar *b64;
  char *r;

  if (mime == NULL) {
    log_info("email", "backend=%s event=%" PRId64 " raw=%zu msg=\"no "
             "camera message to forward (or too large); composing one\"",
             e->name, ev->id, ev->raw ? ev->raw_len : (size_t)0);
    return NULL;
  }
  if (e->ec->transport != EMAIL_GRAPH)
    return mime;
  b64 = g_base64_encode((const guchar *)mime, *len);
  free(mime);
  if (strlen(b64) > EMAIL_GRAPH_MAX) {
    log_info("email", "backend=%s event=%" PRId64 " msg=\"camera message "
             "over Graph's 4 MB; composing one\"", e->name, ev->id);
    g_free(b64);
    return NULL;
  }
  r = xstrdup(b64);
  *len = strlen(r);
  g_free(b64);
  return r;
}

static void
email_deliver(void *b, const struct cam_event *ev, int phase,
              deliver_done_fn done, void *ctx)
{
  struct email *e = b;
  struct email_dlv *d = xcalloc(1, sizeof(*d));

  d->e = e;
  d->ev_id = ev->id;
  d->done = done;
  d->ctx = ctx;
  d->next = e->dlvs;
  e->dlvs = d;
  e->ndlvs++;
  if (phase != 0) {
    email_answer_later(d, DELIVER_FAILED, "unknown delivery phase");
    return;
  }
  d->ev = ev;
  if (e->ec->mode == EMAIL_MODE_FORWARD)
    d->payload = email_forward_payload(e, ev, &d->len);
  d->graph_mime = d->payload && e->ec->transport == EMAIL_GRAPH;
  if (d->payload == NULL && e->ec->transport == EMAIL_GRAPH) {
    d->payload = email_graph_draft(e->ec, ev, &d->gc, &d->len);
    d->step = d->payload ? EMAIL_STEP_DRAFT : EMAIL_STEP_SEND_MAIL;
  }
  if (d->payload == NULL && e->ec->transport == EMAIL_GRAPH)
    d->payload = email_graph_json(e->ec, ev, &d->len);
  else if (d->payload == NULL)
    d->payload = email_build_message(e->ec, ev, &d->len);
  email_start(d);
}

static int
email_idle(void *b)
{
  struct email *e = b;

  return e->ndlvs == 0;
}

static void
email_close(void *b)
{
  struct email *e = b;

  while (e->dlvs)
    email_finish(e->dlvs, DELIVER_RETRY, "backend closing");
  token_keeper_free(e->keeper);
  http_free(e->http);
  log_info("email", "backend=%s msg=\"closed\"", e->name);
  free(e);
}

static void
email_set_notice(void *b, backend_notice_fn fn, void *arg)
{
  struct email *e = b;

  e->notice = fn;
  e->notice_arg = arg;
}

const struct backend_ops email_backend_ops = {
  .type = "email",
  .open = email_open,
  .capacity = email_capacity,
  .deliver = email_deliver,
  .idle = email_idle,
  .close = email_close,
  .set_notice = email_set_notice,
};
