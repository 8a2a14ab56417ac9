/* auth.h - camera logins: password hashes and failure throttling.
 *
 * Hashes are crypt(3) strings, yescrypt ("$y$") by default. Checking one
 * costs tens of milliseconds by design, too much for a camera that logs in
 * for every alert, so a successful check is remembered: a keyed SHA-256 of
 * (user, password) is kept in memory, never the password. */
#ifndef CAMGATE_AUTH_H
#define CAMGATE_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

/* Returns a new crypt(3) yescrypt hash of password (caller frees), or NULL
 * with errno set. */
char *auth_hash_password(const char *password);

/* Returns the camera when user and password are right, NULL otherwise.
 * Compares in constant time; uses and fills the success cache. */
const struct camera_conf *auth_check(const struct config *cfg,
                                     const char *user, const char *password);

/* Password checks off the loop thread. auth_workers_start() starts
 * nthreads workers (at most 4) that post their verdicts through n;
 * auth_workers_stop() joins them and must run before n is freed. Returns
 * 0, or -1 when no thread could start (checks then run inline). */
struct notify;
struct auth_job;
typedef void (*auth_done_fn)(void *arg, const struct camera_conf *cam);
int auth_workers_start(struct notify *n, int nthreads);
void auth_workers_stop(void);

/* Like auth_check(), without blocking the loop. A success cache hit, or a
 * call without workers, answers here: the camera or NULL, *jobp NULL.
 * Otherwise returns NULL with *jobp set, and done(arg, cam) runs later on
 * the loop thread, with the camera or NULL, unless auth_job_cancel(*jobp)
 * comes first. The job holds a reference to cfg; it frees itself. */
const struct camera_conf *auth_check_start(struct config *cfg,
                                           const char *user,
                                           const char *password,
                                           auth_done_fn done, void *arg,
                                           struct auth_job **jobp);
/* Loop thread only; job may no longer be used after. NULL is fine. */
void auth_job_cancel(struct auth_job *job);

/* Drops the success cache (on config reload). */
void auth_cache_clear(void);

/* Failure throttling per source address. auth_blocked() returns the number
 * of seconds the address must still wait (0: may try). An IPv4-mapped IPv6
 * address counts as its IPv4 address; other families are not throttled.
 * When cfg->smtp.auth_failures failures come within cfg->smtp.auth_lockout
 * seconds of the first, the address is locked out for auth_lockout
 * seconds; either being 0 or less turns throttling off. */
int auth_blocked(const struct config *cfg, const struct sockaddr *sa);
void auth_failed(const struct config *cfg, const struct sockaddr *sa);
void auth_succeeded(const struct sockaddr *sa);
/* Forgets every address's failures and lockouts (on config reload: a
 * camera whose password was just fixed gets in at once). Returns how
 * many addresses were locked out. */
int auth_throttle_clear(void);

/* For tests: fn returns monotonic milliseconds in place of mono_ms();
 * NULL restores mono_ms(). */
void auth_set_clock(int64_t (*fn)(void));

/* For tests: how many times crypt(3) has run in this process, so a test
 * can tell a cache hit from a full check without timing it. */
unsigned long auth_crypt_calls(void);

#endif
