/* token.c - see token.h. */
#include "gateway/token.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/event.h"
#include "gateway/http.h"
#include "gateway/log.h"

#define TOKEN_FILE_MAX (64 * 1024)
#define TOKEN_DEFAULT_EXPIRES 3600
#define TOKEN_EARLY_S 5            /* an access token this close is spent */
#define TOKEN_MIN_WAIT_S 5         /* between two planned refreshes */
#define TOKEN_BACKOFF_MIN_S 2
#define TOKEN_BACKOFF_MAX_S 300
#define TOKEN_LOGIN_POLL_MS 2000   /* looking for a new login's file */
#define TOKEN_HTTP_TIMEOUT_S 30

void
token_secret_free(char *s)
{
  if (s == NULL)
    return;
  explicit_bzero(s, strlen(s));
  free(s);
}

void
token_clear(struct token *t)
{
  token_secret_free(t->access_token);
  token_secret_free(t->refresh_token);
  memset(t, 0, sizeof(*t));
}

static void
token_set(char **dst, const char *value)
{
  token_secret_free(*dst);
  *dst = value ? xstrdup(value) : NULL;
}

static char *
token_slurp(const char *path, size_t *len, char *err, size_t errsz)
{
  struct stat st;
  size_t n = 0;
  char *buf;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

  if (fd < 0) {
    snprintf(err, errsz, "%s: %s", path, strerror(errno));
    return NULL;
  }
  if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
      st.st_size > TOKEN_FILE_MAX || (st.st_mode & 077)) {
    snprintf(err, errsz, "%s: expected a regular file of mode 0600 of at "
             "most 64K", path);
    close(fd);
    return NULL;
  }
  buf = xmalloc((size_t)st.st_size + 1);
  while (n < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);

    if (r <= 0)
      break;
    n += (size_t)r;
  }
  close(fd);
  buf[n] = '\0';
  *len = n;
  return buf;
}

int
token_load(const char *path, struct token *t, char *err, size_t errsz)
{
  json_error_t jerr;
  size_t len = 0;
  char *buf = token_slurp(path, &len, err, errsz);
  json_t *root, *v;

  token_clear(t);
  if (buf == NULL)
    return -1;
  root = json_loadb(buf, len, 0, &jerr);
  explicit_bzero(buf, len);
  free(buf);
  if (!json_is_object(root)) {
    snprintf(err, errsz, "%s: not a token file (JSON object expected)",
             path);
    json_decref(root);
    return -1;
  }
  token_set(&t->access_token,
            json_string_value(json_object_get(root, "access_token")));
  token_set(&t->refresh_token,
            json_string_value(json_object_get(root, "refresh_token")));
  v = json_object_get(root, "expires_at");
  t->expires_at = json_is_integer(v) ? json_integer_value(v) : 0;
  t->needs_login = json_is_true(json_object_get(root, "needs_login"));
  json_decref(root);
  return 0;
}

static void
token_fsync_dir(const char *path)
{
  char *copy = xstrdup(path);
  int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(copy);
}

static char *
token_json(const struct token *t)
{
  json_t *root = json_object();
  char *s;

  if (t->access_token)
    json_object_set_new(root, "access_token",
                        json_string(t->access_token));
  json_object_set_new(root, "expires_at", json_integer(t->expires_at));
  if (t->refresh_token)
    json_object_set_new(root, "refresh_token",
                        json_string(t->refresh_token));
  json_object_set_new(root, "needs_login", json_boolean(t->needs_login));
  s = json_dumps(root, JSON_INDENT(2));
  json_decref(root);
  if (s == NULL)
    fatal("token: cannot serialize");
  return s;
}

int
token_save(const char *path, const struct token *t, char *err,
           size_t errsz)
{
  size_t n = strlen(path) + 16;
  char *tmp = xmalloc(n);
  char *json = token_json(t);
  int fd, rc = -1;

  snprintf(tmp, n, "%s.tmpXXXXXX", path);
  fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errsz, "%s: %s", tmp, strerror(errno));
    goto out;
  }
  if (fchmod(fd, 0600) < 0 || write_all(fd, json, strlen(json)) < 0 ||
      write_all(fd, "\n", 1) < 0 || fsync(fd) < 0) {
    snprintf(err, errsz, "%s: %s", tmp, strerror(errno));
    close(fd);
    unlink(tmp);
    goto out;
  }
  close(fd);
  if (rename(tmp, path) < 0) {
    snprintf(err, errsz, "%s: %s", path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  token_fsync_dir(path);
  rc = 0;
out:
  token_secret_free(json);
  free(tmp);
  return rc;
}

static enum token_result
token_error_kind(const char *code)
{
  static const struct {
    const char *code;
    enum token_result r;
  } kinds[] = {
    {"authorization_pending", TOKEN_PENDING},
    {"slow_down", TOKEN_SLOW_DOWN},
    {"expired_token", TOKEN_EXPIRED},
    {"access_denied", TOKEN_DENIED},
    {"authorization_declined", TOKEN_DENIED},
    {"invalid_grant", TOKEN_INVALID_GRANT},
    {"temporarily_unavailable", TOKEN_TRANSIENT},
    {"server_error", TOKEN_TRANSIENT},
  };

  for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
    if (strcmp(code, kinds[i].code) == 0)
      return kinds[i].r;
  return TOKEN_REFUSED;
}

static enum token_result
token_parse_ok(json_t *root, int64_t now_s, struct token *t, char *err,
               size_t errsz)
{
  const char *access = json_string_value(json_object_get(root,
                                                         "access_token"));
  const char *refresh = json_string_value(json_object_get(root,
                                                          "refresh_token"));
  json_t *exp = json_object_get(root, "expires_in");
  int64_t expires_in = TOKEN_DEFAULT_EXPIRES;

  if (access == NULL || *access == '\0') {
    snprintf(err, errsz, "no access_token in the answer");
    return TOKEN_TRANSIENT;
  }
  if (json_is_integer(exp))
    expires_in = json_integer_value(exp);
  else if (json_is_string(exp))
    expires_in = strtoll(json_string_value(exp), NULL, 10);
  if (expires_in <= 0)
    expires_in = TOKEN_DEFAULT_EXPIRES;
  token_set(&t->access_token, access);
  if (refresh && *refresh)
    token_set(&t->refresh_token, refresh);
  t->expires_at = now_s + expires_in;
  t->needs_login = 0;
  return TOKEN_OK;
}

enum token_result
token_parse(const char *body, size_t len, long status, int64_t now_s,
            struct token *t, char *err, size_t errsz)
{
  json_error_t jerr;
  json_t *root = body && len ? json_loadb(body, len, 0, &jerr) : NULL;
  const char *code, *desc;
  enum token_result r;

  snprintf(err, errsz, "HTTP %ld", status);
  if (!json_is_object(root)) {
    json_decref(root);
    if (status == 0 || status >= 500 || status == 429 || status == 408)
      return TOKEN_TRANSIENT;
    return status >= 200 && status < 300 ? TOKEN_TRANSIENT : TOKEN_REFUSED;
  }
  code = json_string_value(json_object_get(root, "error"));
  if (status >= 200 && status < 300 && code == NULL) {
    r = token_parse_ok(root, now_s, t, err, errsz);
    json_decref(root);
    return r;
  }
  desc = json_string_value(json_object_get(root, "error_description"));
  snprintf(err, errsz, "HTTP %ld %s%s%.160s", status, code ? code : "error",
           desc ? ": " : "", desc ? desc : "");
  r = code ? token_error_kind(code) : TOKEN_REFUSED;
  if (status >= 500 || status == 429)
    r = TOKEN_TRANSIENT;
  json_decref(root);
  return r;
}

void
token_form_add(GString *f, const char *key, const char *value)
{
  gchar *k = g_uri_escape_string(key, NULL, FALSE);
  gchar *v = g_uri_escape_string(value, NULL, FALSE);

  if (f->len)
    g_string_append_c(f, '&');
  g_string_append_printf(f, "%s=%s", k, v);
  explicit_bzero(v, strlen(v));
  g_free(k);
  g_free(v);
}

void
token_form_free(GString *f)
{
  if (f == NULL)
    return;
  explicit_bzero(f->str, f->allocated_len);
  g_string_free(f, TRUE);
}

GString *
token_refresh_form(const struct oauth_conf *oc, const char *refresh_token)
{
  GString *f = g_string_sized_new(512);

  if (oc->flow == OAUTH_FLOW_CLIENT_CREDENTIALS) {
    token_form_add(f, "grant_type", "client_credentials");
  } else {
    token_form_add(f, "grant_type", "refresh_token");
    token_form_add(f, "refresh_token", refresh_token ? refresh_token : "");
  }
  token_form_add(f, "client_id", oc->client_id);
  if (oc->client_secret)
    token_form_add(f, "client_secret", oc->client_secret);
  if (oc->provider == OAUTH_MICROSOFT)
    token_form_add(f, "scope", oc->scope);
  return f;
}

/* ---- the keeper ---- */

struct token_keeper {
  struct event_base *base;
  struct http *http;
  char *name;
  char *config_path;
  const struct oauth_conf *oc;
  char *ca_file;
  struct token tok;
  enum token_state state;
  struct event *timer;
  CURL *easy;                 /* the refresh under way, or NULL */
  struct curl_slist *hdrs;
  GString *form;
  GString *resp;
  int backoff_s;
  int64_t refreshed_at;       /* seconds; the last good refresh */
  struct timespec file_mtime; /* of the token file, for a new login */
  token_changed_fn changed;
  void *arg;
};

static int64_t
token_now(void)
{
  return now_ms() / 1000;
}

static void
token_arm(struct token_keeper *k, int64_t ms)
{
  struct timeval tv;

  if (ms < 0)
    ms = 0;
  tv.tv_sec = ms / 1000;
  tv.tv_usec = (ms % 1000) * 1000;
  evtimer_add(k->timer, &tv);
}

static int
token_access_ok(const struct token_keeper *k)
{
  return k->tok.access_token && k->tok.expires_at > token_now() +
                                                      TOKEN_EARLY_S;
}

/* The next planned refresh: margin before expiry, and at least every
 * refresh_every, never sooner than a few seconds from now. */
static void
token_plan(struct token_keeper *k)
{
  int64_t now = token_now();
  int64_t at = k->tok.expires_at - k->oc->refresh_margin;
  int64_t daily = (k->refreshed_at ? k->refreshed_at : now) +
                  k->oc->refresh_every;

  if (daily < at)
    at = daily;
  if (at < now + TOKEN_MIN_WAIT_S)
    at = now + TOKEN_MIN_WAIT_S;
  token_arm(k, (at - now) * 1000);
}

static void
token_mtime(const char *path, struct timespec *ts)
{
  struct stat st;

  memset(ts, 0, sizeof(*ts));
  if (path && stat(path, &st) == 0)
    *ts = st.st_mtim;
}

static void
token_needs_login(struct token_keeper *k, const char *why)
{
  char esc[256];

  k->state = TOKEN_STATE_NEEDS_LOGIN;
  log_escape(esc, sizeof(esc), why, strlen(why));
  log_error("oauth", "backend=%s state=needs_login reason=%s msg=\"sign "
            "in again with: camgate oauth login %s -c %s; deliveries wait "
            "in the spool until then\"", k->name, esc, k->name,
            k->config_path);
  token_mtime(k->oc->token_file, &k->file_mtime);
  token_arm(k, TOKEN_LOGIN_POLL_MS);
}

static void
token_save_logged(struct token_keeper *k)
{
  char err[256];

  if (k->oc->token_file == NULL)
    return;
  if (token_save(k->oc->token_file, &k->tok, err, sizeof(err)) == 0) {
    token_mtime(k->oc->token_file, &k->file_mtime);
    return;
  }
  log_error("oauth", "backend=%s error=\"%s\" msg=\"cannot write the "
            "token file; the new refresh token lives in memory only\"",
            k->name, err);
}

static void
token_xfer_free(struct token_keeper *k)
{
  if (k->easy) {
    http_cancel(k->http, k->easy);
    curl_easy_cleanup(k->easy);
    k->easy = NULL;
  }
  curl_slist_free_all(k->hdrs);
  k->hdrs = NULL;
  token_form_free(k->form);
  k->form = NULL;
  token_form_free(k->resp);
  k->resp = NULL;
}

static void
token_refresh_failed(struct token_keeper *k, enum token_result r,
                     const char *err)
{
  char esc[256];

  log_escape(esc, sizeof(esc), err, strlen(err));
  if (r == TOKEN_INVALID_GRANT && k->oc->flow !=
                                    OAUTH_FLOW_CLIENT_CREDENTIALS) {
    token_set(&k->tok.access_token, NULL);
    k->tok.needs_login = 1;
    token_save_logged(k);
    token_needs_login(k, err);
    return;
  }
  k->backoff_s = k->backoff_s ? k->backoff_s * 2 : TOKEN_BACKOFF_MIN_S;
  if (k->backoff_s > TOKEN_BACKOFF_MAX_S)
    k->backoff_s = TOKEN_BACKOFF_MAX_S;
  k->state = token_access_ok(k) ? TOKEN_STATE_VALID : TOKEN_STATE_WAITING;
  log_warn("oauth", "backend=%s error=%s retry_in_s=%d access_valid=%s "
           "msg=\"token refresh failed\"", k->name, esc, k->backoff_s,
           k->state == TOKEN_STATE_VALID ? "yes" : "no");
  token_arm(k, (int64_t)k->backoff_s * 1000);
}

static void
token_refresh_done(void *arg, CURL *easy, CURLcode rc, long status)
{
  struct token_keeper *k = arg;
  char err[256];
  enum token_result r;

  (void)easy;
  curl_easy_cleanup(k->easy);
  k->easy = NULL;
  if (rc != CURLE_OK) {
    snprintf(err, sizeof(err), "%s", curl_easy_strerror(rc));
    r = TOKEN_TRANSIENT;
  } else {
    r = token_parse(k->resp->str, k->resp->len, status, token_now(),
                    &k->tok, err, sizeof(err));
  }
  token_xfer_free(k);
  if (r == TOKEN_OK) {
    k->backoff_s = 0;
    k->refreshed_at = token_now();
    k->state = TOKEN_STATE_VALID;
    token_save_logged(k);
    log_info("oauth", "backend=%s expires_in_s=%" PRId64 " msg=\"token "
             "refreshed\"", k->name, k->tok.expires_at - token_now());
    token_plan(k);
  } else {
    token_refresh_failed(k, r, err);
  }
  k->changed(k->arg);
}

static void
token_refresh_start(struct token_keeper *k)
{
  if (k->easy)
    return;
  k->form = token_refresh_form(k->oc, k->tok.refresh_token);
  k->resp = g_string_sized_new(1024);
  k->hdrs = curl_slist_append(NULL, "Accept: application/json");
  k->easy = curl_easy_init();
  if (k->easy == NULL)
    fatal("token: curl_easy_init failed");
  curl_easy_setopt(k->easy, CURLOPT_URL, k->oc->token_url);
  curl_easy_setopt(k->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(k->easy, CURLOPT_POSTFIELDS, k->form->str);
  curl_easy_setopt(k->easy, CURLOPT_POSTFIELDSIZE, (long)k->form->len);
  curl_easy_setopt(k->easy, CURLOPT_HTTPHEADER, k->hdrs);
  curl_easy_setopt(k->easy, CURLOPT_WRITEFUNCTION, http_collect_body);
  curl_easy_setopt(k->easy, CURLOPT_WRITEDATA, k->resp);
  curl_easy_setopt(k->easy, CURLOPT_TIMEOUT, (long)TOKEN_HTTP_TIMEOUT_S);
  curl_easy_setopt(k->easy, CURLOPT_CONNECTTIMEOUT, 10L);
  if (k->ca_file)
    curl_easy_setopt(k->easy, CURLOPT_CAINFO, k->ca_file);
  if (http_start(k->http, k->easy, token_refresh_done, k) < 0) {
    curl_easy_cleanup(k->easy);
    k->easy = NULL;
    token_xfer_free(k);
    token_refresh_failed(k, TOKEN_TRANSIENT, "curl refused the transfer");
  }
}

/* A new login writes a new token file: take it up. */
static void
token_login_poll(struct token_keeper *k)
{
  struct timespec ts;
  char err[256];

  token_mtime(k->oc->token_file, &ts);
  if (ts.tv_sec == k->file_mtime.tv_sec &&
      ts.tv_nsec == k->file_mtime.tv_nsec) {
    token_arm(k, TOKEN_LOGIN_POLL_MS);
    return;
  }
  k->file_mtime = ts;
  if (token_load(k->oc->token_file, &k->tok, err, sizeof(err)) < 0 ||
      k->tok.needs_login || k->tok.refresh_token == NULL) {
    token_arm(k, TOKEN_LOGIN_POLL_MS);
    return;
  }
  log_info("oauth", "backend=%s msg=\"new login found; deliveries "
           "resume\"", k->name);
  k->refreshed_at = token_now();
  k->backoff_s = 0;
  if (token_access_ok(k)) {
    k->state = TOKEN_STATE_VALID;
    token_plan(k);
  } else {
    k->state = TOKEN_STATE_WAITING;
    token_refresh_start(k);
  }
  k->changed(k->arg);
}

static void
token_timer_cb(evutil_socket_t fd, short what, void *arg)
{
  struct token_keeper *k = arg;

  (void)fd;
  (void)what;
  if (k->state == TOKEN_STATE_NEEDS_LOGIN)
    token_login_poll(k);
  else
    token_refresh_start(k);
}

/* What the token file says at start. */
static void
token_start(struct token_keeper *k)
{
  char err[256];
  int app = k->oc->flow == OAUTH_FLOW_CLIENT_CREDENTIALS;

  if (k->oc->token_file &&
      token_load(k->oc->token_file, &k->tok, err, sizeof(err)) < 0 &&
      !app) {
    token_needs_login(k, err);
    return;
  }
  if (!app && (k->tok.needs_login || k->tok.refresh_token == NULL)) {
    token_needs_login(k, k->tok.needs_login
                           ? "the last refresh token was refused"
                           : "no refresh token in the token file");
    return;
  }
  k->refreshed_at = token_now();
  if (token_access_ok(k) &&
      k->tok.expires_at - k->oc->refresh_margin > token_now()) {
    k->state = TOKEN_STATE_VALID;
    token_plan(k);
    return;
  }
  k->state = token_access_ok(k) ? TOKEN_STATE_VALID : TOKEN_STATE_WAITING;
  token_arm(k, 0);
}

struct token_keeper *
token_keeper_new(struct event_base *base, struct http *http,
                 const char *name, const char *config_path,
                 const struct oauth_conf *oc, const char *ca_file,
                 token_changed_fn changed, void *arg)
{
  struct token_keeper *k = xcalloc(1, sizeof(*k));

  k->base = base;
  k->http = http;
  k->name = xstrdup(name);
  k->config_path = xstrdup(config_path ? config_path : "FILE");
  k->oc = oc;
  k->ca_file = ca_file ? xstrdup(ca_file) : NULL;
  k->changed = changed;
  k->arg = arg;
  k->timer = evtimer_new(base, token_timer_cb, k);
  token_start(k);
  return k;
}

void
token_keeper_free(struct token_keeper *k)
{
  if (k == NULL)
    return;
  token_xfer_free(k);
  event_free(k->timer);
  token_clear(&k->tok);
  free(k->name);
  free(k->config_path);
  free(k->ca_file);
  free(k);
}

enum token_state
token_keeper_state(const struct token_keeper *k)
{
  if (k->state == TOKEN_STATE_VALID && !token_access_ok(k))
    return TOKEN_STATE_WAITING;
  return k->state;
}

const char *
token_keeper_access(const struct token_keeper *k)
{
  return token_keeper_state(k) == TOKEN_STATE_VALID ? k->tok.access_token
                                                    : NULL;
}

void
token_keeper_reject(struct token_keeper *k)
{
  if (k->state == TOKEN_STATE_NEEDS_LOGIN || k->easy)
    return;
  log_info("oauth", "backend=%s msg=\"the server refused the access "
           "token; refreshing\"", k->name);
  token_set(&k->tok.access_token, NULL);
  k->tok.expires_at = 0;
  k->state = TOKEN_STATE_WAITING;
  evtimer_del(k->timer);
  token_refresh_start(k);
}
