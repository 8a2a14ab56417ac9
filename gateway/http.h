/* http.h - libcurl transfers driven by the libevent loop.
 *
 * Backends that speak HTTP or SMTP outward (ntfy, OAuth token endpoints,
 * Microsoft Graph, onward SMTP) hand a configured CURL easy handle to
 * http_start() and get one callback when it ends. Transfers run through a
 * curl multi handle whose sockets and timers are libevent events, so no
 * transfer blocks the loop or needs a thread. */
#ifndef CAMGATE_HTTP_H
#define CAMGATE_HTTP_H

#include <curl/curl.h>

struct event_base;
struct http;

/* Called on the loop thread once the transfer ends. rc is curl's result;
 * status the HTTP or SMTP response code (0 when none came). The caller
 * still owns easy and cleans it up, here or later. */
typedef void (*http_done_fn)(void *arg, CURL *easy, CURLcode rc,
                             long status);

/* curl_global_init must have run (http_global_init does it once). */
void http_global_init(void);
struct http *http_new(struct event_base *base);
/* Ends every transfer still running; their callbacks are not called. */
void http_free(struct http *h);

/* Starts easy. done runs later, never inside http_start. Returns 0, or -1
 * when curl refused the handle (done will not run). */
int http_start(struct http *h, CURL *easy, http_done_fn done, void *arg);
/* Stops easy without its callback; a no-op when it is not running. */
void http_cancel(struct http *h, CURL *easy);
/* A CURLOPT_WRITEFUNCTION that appends the body to the GString given as
 * CURLOPT_WRITEDATA (NULL: the body is dropped), and fails the transfer
 * past HTTP_BODY_MAX bytes, so an answer cannot grow memory unbounded. */
#define HTTP_BODY_MAX (64 * 1024)
size_t http_collect_body(char *p, size_t size, size_t n, void *gstring);

/* Transfers running. */
int http_running(const struct http *h);

#endif
