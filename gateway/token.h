/* token.h - OAuth 2.0 tokens: the token file, token endpoint answers and
 * the keeper that refreshes them on the event loop.
 *
 * One token file per account: JSON with access_token, expires_at (seconds
 * since the epoch), refresh_token and needs_login, mode 0600, replaced
 * atomically (temporary file, fsync, rename, fsync of the directory).
 * Tokens never reach a log; every buffer that held one is wiped before it
 * is freed. */
#ifndef CAMGATE_TOKEN_H
#define CAMGATE_TOKEN_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct event_base;
struct http;

struct token {
  char *access_token;
  char *refresh_token;
  int64_t expires_at;       /* seconds since the epoch; 0: unknown */
  int needs_login;          /* the refresh token was refused */
};

/* Wipes and frees what t holds; t itself stays. */
void token_clear(struct token *t);

/* Loads path into t (cleared first). Returns 0; -1 with a reason in err
 * when the file is missing, not mode 0600 or not a token file. */
int token_load(const char *path, struct token *t, char *err, size_t errsz);
/* Replaces path atomically with t, mode 0600. Returns 0 or -1 (err). */
int token_save(const char *path, const struct token *t, char *err,
               size_t errsz);

enum token_result {
  TOKEN_OK,                 /* t has a new access token */
  TOKEN_PENDING,            /* authorization_pending (device flow) */
  TOKEN_SLOW_DOWN,          /* slow_down (device flow) */
  TOKEN_EXPIRED,            /* expired_token: the device code ran out */
  TOKEN_DENIED,             /* access_denied: the user said no */
  TOKEN_INVALID_GRANT,      /* the refresh token or code was refused */
  TOKEN_REFUSED,            /* another OAuth error (invalid_client...) */
  TOKEN_TRANSIENT           /* no answer, 5xx or not JSON: try again */
};

/* Reads a token endpoint answer (HTTP status, JSON body). On TOKEN_OK
 * the access token and expiry in t are replaced, and the refresh token
 * too when the answer rotates it. Otherwise err has the error code and
 * description (server text: escape it before logging). */
enum token_result token_parse(const char *body, size_t len, long status,
                              int64_t now_s, struct token *t, char *err,
                              size_t errsz);

/* Appends key=value, form-encoded, to f. */
void token_form_add(GString *f, const char *key, const char *value);
/* Wipes and frees a form that may hold secrets. */
void token_form_free(GString *f);
/* The form of a refresh request (or, for client_credentials, of a new
 * token request). refresh_token may be NULL for the latter. */
GString *token_refresh_form(const struct oauth_conf *oc,
                            const char *refresh_token);
/* Wipes and frees s; NULL is fine. */
void token_secret_free(char *s);

/* ---- the keeper: one account's tokens, refreshed on the loop ---- */

enum token_state {
  TOKEN_STATE_VALID,        /* an access token that has not expired */
  TOKEN_STATE_WAITING,      /* none valid now; a refresh is under way */
  TOKEN_STATE_NEEDS_LOGIN   /* camgate oauth login must run */
};

struct token_keeper;
typedef void (*token_changed_fn)(void *arg);

/* Loads oc->token_file and keeps the token fresh: a refresh margin
 * before expiry and at least every refresh_every, with backoff while
 * the token endpoint fails. changed(arg) runs on the loop after each
 * refresh, failed or not, and when a new login is seen. name and
 * config_path go into log lines. */
struct token_keeper *token_keeper_new(struct event_base *base,
                                      struct http *http, const char *name,
                                      const char *config_path,
                                      const struct oauth_conf *oc,
                                      const char *ca_file,
                                      token_changed_fn changed, void *arg);
void token_keeper_free(struct token_keeper *k);
enum token_state token_keeper_state(const struct token_keeper *k);
/* The access token while the state is valid, else NULL. Owned by k and
 * valid until the next turn of the loop. */
const char *token_keeper_access(const struct token_keeper *k);
/* The server refused the access token: drop it and refresh now. */
void token_keeper_reject(struct token_keeper *k);

#endif
