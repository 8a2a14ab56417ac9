/* oauth.h - `camgate oauth login BACKEND -c FILE`: get an e-mail
 * backend's first tokens.
 *
 *   Microsoft, flow device: the device authorization grant (RFC 8628).
 *     Prints the verification URL and the user code, then polls the token
 *     endpoint (authorization_pending, slow_down, expired_token,
 *     access_denied). Works on a box without a browser.
 *   Google, flow auth_code: authorization code with PKCE (RFC 7636). Prints
 *     the URL to open; the user pastes back the address the browser was
 *     sent to (the redirect), from which the code is taken.
 *   Microsoft 365, flow client_credentials: app-only; nothing to sign in
 *     to. The command checks the client secret by getting a token.
 *
 * The tokens go to the backend's token_file (mode 0600, atomically); a
 * running camgate notices the new file by itself. The transfers block:
 * this is a command line tool, not the daemon. */
#ifndef CAMGATE_OAUTH_H
#define CAMGATE_OAUTH_H

#include <stdio.h>

#include "config/config.h"

/* Runs the login of backend bc. Prompts go to out, the pasted redirect
 * comes from in. Returns 0 when tokens were saved (or, app-only, when a
 * token could be had), 1 otherwise, with the reason printed to err. */
int oauth_login(const struct backend_conf *bc, FILE *in, FILE *out,
                FILE *err);

#endif
