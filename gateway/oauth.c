/* oauth.c - see oauth.h. */
#include "gateway/oauth.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway/event.h"
#include "gateway/http.h"
#include "gateway/log.h"
#include "gateway/token.h"

#define OAUTH_LINE_MAX 8192
#define OAUTH_DEVICE_MAX_S 1800      /* never poll longer than this */
#define OAUTH_DEVICE_INTERVAL_S 5    /* RFC 8628's default */
#define OAUTH_SLOW_DOWN_S 5
#define OAUTH_MAX_TRANSIENT 10
#define OAUTH_HTTP_TIMEOUT_S 30L
#define OAUTH_DEVICE_GRANT "urn:ietf:params:oauth:grant-type:device_code"

/* POSTs form to url. Returns the HTTP status, 0 when no answer came (the
 * reason in err). resp gets the body. */
static long
oauth_post(const struct email_conf *ec, const char *url, GString *form,
           GString *resp, char *err, size_t errsz)
{
  struct curl_slist *hdrs = curl_slist_append(NULL,
                                              "Accept: application/json");
  CURL *c = curl_easy_init();
  long status = 0;
  CURLcode rc;

  if (c == NULL)
    fatal("oauth: curl_easy_init failed");
  g_string_truncate(resp, 0);
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, form->str);
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)form->len);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_collect_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, OAUTH_HTTP_TIMEOUT_S);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (ec->ca_file)
    curl_easy_setopt(c, CURLOPT_CAINFO, ec->ca_file);
  rc = curl_easy_perform(c);
  if (rc == CURLE_OK)
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  else
    snprintf(err, errsz, "%s: %s", url, curl_easy_strerror(rc));
  curl_easy_cleanup(c);
  curl_slist_free_all(hdrs);
  return status;
}

static void
oauth_sleep(int seconds)
{
  struct timespec ts = {seconds, 0};

  while (nanosleep(&ts, &ts) != 0)
    ;
}

static int
oauth_save(const struct oauth_conf *oc, struct token *t, FILE *out,
           FILE *errf)
{
  char err[256];

  if (oc->token_file == NULL)
    return 0;
  t->needs_login = 0;
  if (token_save(oc->token_file, t, err, sizeof(err)) < 0) {
    fprintf(errf, "camgate: cannot save the tokens: %s\n", err);
    return 1;
  }
  fprintf(out, "Signed in. Tokens saved to %s; a running camgate takes "
          "them up within seconds.\n", oc->token_file);
  return 0;
}

/* Polls the token endpoint until the user has signed in, or until the
 * code expires, the user declines, or the server refuses. */
static int
oauth_device_poll(const struct email_conf *ec, const char *device_code,
                  int interval, int expires_in, FILE *out, FILE *errf)
{
  const struct oauth_conf *oc = &ec->oauth;
  int64_t deadline = mono_ms() + (int64_t)expires_in * 1000;
  GString *resp = g_string_new(NULL);
  struct token t = {0};
  int transient = 0, rc = 1;

  for (int polls = 0; polls < OAUTH_DEVICE_MAX_S; polls++) {
    GString *form = g_string_new(NULL);
    char err[256] = "";
    enum token_result r;
    long status;

    if (mono_ms() >= deadline) {
      fprintf(errf, "camgate: the code expired before sign-in; run the "
              "command again\n");
      break;
    }
    oauth_sleep(interval);
    token_form_add(form, "grant_type", OAUTH_DEVICE_GRANT);
    token_form_add(form, "client_id", oc->client_id);
    token_form_add(form, "device_code", device_code);
    status = oauth_post(ec, oc->token_url, form, resp, err, sizeof(err));
    token_form_free(form);
    r = status ? token_parse(resp->str, resp->len, status, now_ms() / 1000,
                             &t, err, sizeof(err))
               : TOKEN_TRANSIENT;
    if (r == TOKEN_OK) {
      rc = oauth_save(oc, &t, out, errf);
      break;
    }
    if (r == TOKEN_PENDING)
      continue;
    if (r == TOKEN_SLOW_DOWN) {
      interval += OAUTH_SLOW_DOWN_S;
      continue;
    }
    if (r == TOKEN_TRANSIENT && ++transient < OAUTH_MAX_TRANSIENT)
      continue;
    if (r == TOKEN_EXPIRED)
      fprintf(errf, "camgate: the code expired before sign-in; run the "
              "command again\n");
    else if (r == TOKEN_DENIED)
      fprintf(errf, "camgate: sign-in was declined (%s)\n", err);
    else
      fprintf(errf, "camgate: the token endpoint refused: %s\n", err);
    break;
  }
  token_form_free(resp);
  token_clear(&t);
  return rc;
}

static int
oauth_device(const struct email_conf *ec, FILE *out, FILE *errf)
{
  const struct oauth_conf *oc = &ec->oauth;
  GString *form = g_string_new(NULL);
  GString *resp = g_string_new(NULL);
  char err[256] = "";
  json_error_t jerr;
  json_t *root = NULL;
  const char *code, *user_code, *uri;
  json_int_t interval, expires;
  long status;
  int rc = 1;

  token_form_add(form, "client_id", oc->client_id);
  token_form_add(form, "scope", oc->scope);
  status = oauth_post(ec, oc->device_code_url, form, resp, err, sizeof(err));
  if (status == 200)
    root = json_loadb(resp->str, resp->len, 0, &jerr);
  code = json_string_value(json_object_get(root, "device_code"));
  user_code = json_string_value(json_object_get(root, "user_code"));
  uri = json_string_value(json_object_get(root, "verification_uri"));
  if (uri == NULL)
    uri = json_string_value(json_object_get(root, "verification_url"));
  if (code == NULL || user_code == NULL || uri == NULL) {
    fprintf(errf, "camgate: no device code from %s: %s %.200s\n",
            oc->device_code_url, err[0] ? err : "", resp->str);
    goto out;
  }
  interval = json_integer_value(json_object_get(root, "interval"));
  expires = json_integer_value(json_object_get(root, "expires_in"));
  if (interval <= 0)
    interval = OAUTH_DEVICE_INTERVAL_S;
  if (expires <= 0 || expires > OAUTH_DEVICE_MAX_S)
    expires = OAUTH_DEVICE_MAX_S;
  fprintf(out, "To sign in, open %s in any browser and enter the code "
          "%s\n(waiting up to %d minutes)\n", uri, user_code,
          (int)(expires + 59) / 60);
  fflush(out);
  rc = oauth_device_poll(ec, code, (int)interval, (int)expires, out, errf);
out:
  json_decref(root);
  token_form_free(form);
  token_form_free(resp);
  return rc;
}

/* base64url without padding (RFC 7636 appendix A). */
static void
oauth_b64url(const unsigned char *in, size_t n, char *out, size_t outsz)
{
  unsigned char buf[128];
  int len;

  if (n > 64 || outsz < 90)
    fatal("oauth: base64url input too long");
  len = EVP_EncodeBlock(buf, in, (int)n);
  for (int i = 0; i < len; i++)
    buf[i] = buf[i] == '+' ? '-' : buf[i] == '/' ? '_' : buf[i];
  while (len > 0 && buf[len - 1] == '=')
    len--;
  memcpy(out, buf, (size_t)len);
  out[len] = '\0';
}

static void
oauth_random(char *out, size_t outsz)
{
  unsigned char rnd[32];

  if (RAND_bytes(rnd, sizeof(rnd)) != 1)
    fatal("oauth: RAND_bytes failed");
  oauth_b64url(rnd, sizeof(rnd), out, outsz);
}

/* The value of query parameter key in url, decoded, or NULL. */
static char *
oauth_query_param(const char *url, const char *key)
{
  const char *q = strchr(url, '?');
  size_t klen = strlen(key);

  while (q && *q) {
    const char *p = q + 1;
    size_t n = strcspn(p, "&#");

    if (n > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
      char *raw = xstrndup(p + klen + 1, n - klen - 1);
      char *v = g_uri_unescape_string(raw, NULL);
      char *r = v ? xstrdup(v) : NULL;

      token_secret_free(raw);
      g_free(v);
      return r;
    }
    q = p[n] == '&' ? p + n : NULL;
  }
  return NULL;
}

static GString *
oauth_auth_url(const struct oauth_conf *oc, const char *challenge,
               const char *state)
{
  GString *q = g_string_new(NULL);
  GString *url = g_string_new(oc->auth_url);

  token_form_add(q, "response_type", "code");
  token_form_add(q, "client_id", oc->client_id);
  token_form_add(q, "redirect_uri", oc->redirect_uri);
  token_form_add(q, "scope", oc->scope);
  token_form_add(q, "code_challenge", challenge);
  token_form_add(q, "code_challenge_method", "S256");
  token_form_add(q, "state", state);
  if (oc->provider == OAUTH_GOOGLE) {
    token_form_add(q, "access_type", "offline");
    token_form_add(q, "prompt", "consent");
  }
  g_string_append_c(url, strchr(oc->auth_url, '?') ? '&' : '?');
  g_string_append(url, q->str);
  g_string_free(q, TRUE);
  return url;
}

static int
oauth_redeem(const struct email_conf *ec, const char *code,
             const char *verifier, FILE *out, FILE *errf)
{
  const struct oauth_conf *oc = &ec->oauth;
  GString *form = g_string_new(NULL);
  GString *resp = g_string_new(NULL);
  struct token t = {0};
  char err[256] = "";
  long status;
  int rc = 1;

  token_form_add(form, "grant_type", "authorization_code");
  token_form_add(form, "code", code);
  token_form_add(form, "redirect_uri", oc->redirect_uri);
  token_form_add(form, "client_id", oc->client_id);
  if (oc->client_secret)
    token_form_add(form, "client_secret", oc->client_secret);
  token_form_add(form, "code_verifier", verifier);
  status = oauth_post(ec, oc->token_url, form, resp, err, sizeof(err));
  if (status && token_parse(resp->str, resp->len, status, now_ms() / 1000,
                            &t, err, sizeof(err)) == TOKEN_OK)
    rc = oauth_save(oc, &t, out, errf);
  else
    fprintf(errf, "camgate: the token endpoint refused the code: %s\n",
            err);
  token_form_free(form);
  token_form_free(resp);
  token_clear(&t);
  return rc;
}

static int
oauth_auth_code(const struct email_conf *ec, FILE *in, FILE *out,
                FILE *errf)
{
  const struct oauth_conf *oc = &ec->oauth;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  char verifier[96], challenge[96], state[96];
  char line[OAUTH_LINE_MAX];
  char *code = NULL, *got_state = NULL, *error = NULL;
  GString *url;
  int rc = 1;

  oauth_random(verifier, sizeof(verifier));
  oauth_random(state, sizeof(state));
  SHA256((const unsigned char *)verifier, strlen(verifier), digest);
  oauth_b64url(digest, sizeof(digest), challenge, sizeof(challenge));
  url = oauth_auth_url(oc, challenge, state);
  fprintf(out, "Open this address in a browser and allow access:\n\n%s\n\n"
          "The browser then goes to %s... (the page may not load). Paste "
          "that whole address here:\n", url->str, oc->redirect_uri);
  fflush(out);
  g_string_free(url, TRUE);
  if (fgets(line, sizeof(line), in) == NULL) {
    fprintf(errf, "camgate: no address was pasted\n");
    goto out;
  }
  line[strcspn(line, "\r\n")] = '\0';
  code = oauth_query_param(line, "code");
  got_state = oauth_query_param(line, "state");
  error = oauth_query_param(line, "error");
  if (error || code == NULL) {
    fprintf(errf, "camgate: no code in that address%s%s\n",
            error ? ": " : "", error ? error : "");
    goto out;
  }
  if (got_state == NULL || strcmp(got_state, state) != 0) {
    fprintf(errf, "camgate: that address belongs to another sign-in "
            "(state differs); run the command again\n");
    goto out;
  }
  rc = oauth_redeem(ec, code, verifier, out, errf);
out:
  explicit_bzero(line, sizeof(line));
  explicit_bzero(verifier, sizeof(verifier));
  token_secret_free(code);
  free(got_state);
  free(error);
  return rc;
}

static int
oauth_client_credentials(const struct email_conf *ec, FILE *out,
                         FILE *errf)
{
  const struct oauth_conf *oc = &ec->oauth;
  GString *form = token_refresh_form(oc, NULL);
  GString *resp = g_string_new(NULL);
  struct token t = {0};
  char err[256] = "";
  long status;
  int rc = 1;

  status = oauth_post(ec, oc->token_url, form, resp, err, sizeof(err));
  if (status && token_parse(resp->str, resp->len, status, now_ms() / 1000,
                            &t, err, sizeof(err)) == TOKEN_OK) {
    fprintf(out, "App-only access works: camgate gets its tokens with the "
            "client secret by itself; there is nothing to sign in to.\n");
    rc = oauth_save(oc, &t, out, errf);
  } else {
    fprintf(errf, "camgate: the client credentials were refused: %s\n",
            err);
  }
  token_form_free(form);
  token_form_free(resp);
  token_clear(&t);
  return rc;
}

int
oauth_login(const struct backend_conf *bc, FILE *in, FILE *out, FILE *err)
{
  const struct email_conf *ec = &bc->u.email;

  if (bc->type != BACKEND_EMAIL || ec->transport == EMAIL_SMTP) {
    fprintf(err, "camgate: backend %s does not use OAuth (it needs type: "
            "email with transport smtp_xoauth2 or graph)\n", bc->name);
    return 1;
  }
  http_global_init();
  switch (ec->oauth.flow) {
  case OAUTH_FLOW_CLIENT_CREDENTIALS:
    return oauth_client_credentials(ec, out, err);
  case OAUTH_FLOW_AUTH_CODE:
    return oauth_auth_code(ec, in, out, err);
  default:
    return oauth_device(ec, out, err);
  }
}
