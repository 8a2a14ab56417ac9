/* smtp.h - the SMTP server cameras send their alerts to (RFC 5321).
 *
 * Plaintext with STARTTLS (RFC 3207) on smtp.listen, implicit TLS on
 * smtp.listen_tls; AUTH PLAIN and LOGIN (RFC 4954) even after HELO, since
 * cameras greet with HELO and still log in; SIZE (RFC 1870), PIPELINING,
 * 8BITMIME, ENHANCEDSTATUSCODES. Each accepted message becomes one event,
 * stored in the spool before the camera gets its 250. */
#ifndef CAMGATE_SMTP_H
#define CAMGATE_SMTP_H

#include <stdint.h>

#include "config/config.h"

struct event_base;
struct spool;
struct smtp_server;

/* Called on the loop thread after an event is stored. */
typedef void (*smtp_stored_fn)(void *arg, int64_t event_id);

/* Binds the listeners of cfg. Returns NULL with a reason in err. */
struct smtp_server *smtp_server_new(struct event_base *base,
                                    struct config *cfg, struct spool *sp,
                                    smtp_stored_fn stored, void *arg,
                                    char *err, size_t errsz);
/* New sessions use cfg from now on; sessions under way keep theirs.
 * Returns 0, or -1 (err says why) when cfg's TLS cannot be loaded, in
 * which case nothing changes. */
int smtp_server_reload(struct smtp_server *srv, struct config *cfg,
                       char *err, size_t errsz);
/* Stops accepting; idle sessions get 421 and close; sessions receiving a
 * message finish it. */
void smtp_server_shutdown(struct smtp_server *srv);
/* Number of open sessions. */
int smtp_server_sessions(const struct smtp_server *srv);
/* Ends every session and frees the server. NULL is fine. */
void smtp_server_free(struct smtp_server *srv);

#endif
