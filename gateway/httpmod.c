/* httpmod.c - what camgate-http.so offers the binary (see module.h). */
#include "gateway/module.h"

#include "gateway/oauth.h"
#include "gateway/token.h"

const struct http_module camgate_http_module = {
  .email = &email_backend_ops,
  .ntfy = &ntfy_backend_ops,
  .token_load = token_load,
  .token_clear = token_clear,
  .oauth_login = oauth_login,
};
