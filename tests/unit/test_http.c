/* Unit tests of the curl-on-libevent driver against a real HTTP server
 * (Python's http.server on a free loopback port). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "gateway/http.h"
#include "gateway/log.h"

struct result {
  int done;
  CURLcode rc;
  long status;
  char body[256];
  size_t len;
};

static char dir[64];
static int port;
static pid_t server;

static int
free_port(void)
{
  struct sockaddr_in sa = {0};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int p;

  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  getsockname(fd, (struct sockaddr *)&sa, &len);
  p = ntohs(sa.sin_port);
  close(fd);
  return p;
}

static int
port_open(int p)
{
  struct sockaddr_in sa = {0};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int ok;

  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)p);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
  close(fd);
  return ok;
}

static int
setup(void **state)
{
  char path[128];
  char portstr[16];
  FILE *f;

  (void)state;
  snprintf(dir, sizeof(dir), "/tmp/camgate-http-XXXXXX");
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof(path), "%s/hello.txt", dir);
  f = fopen(path, "w");
  assert_non_null(f);
  fputs("hello camgate", f);
  fclose(f);
  port = free_port();
  snprintf(portstr, sizeof(portstr), "%d", port);
  server = fork();
  if (server == 0) {
    execl("/usr/bin/python3", "python3", "-m", "http.server", portstr,
          "--bind", "127.0.0.1", "--directory", dir, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 100 && !port_open(port); i++)
    usleep(50000);
  assert_true(port_open(port));
  return 0;
}

static int
teardown(void **state)
{
  char cmd[128];

  (void)state;
  kill(server, SIGTERM);
  waitpid(server, NULL, 0);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
  struct result *r = arg;
  size_t len = size * n;
  size_t room = sizeof(r->body) - 1 - r->len;

  memcpy(r->body + r->len, data, len < room ? len : room);
  r->len += len < room ? len : room;
  return len;
}

static void
on_done(void *arg, CURL *easy, CURLcode rc, long status)
{
  struct result *r = arg;

  r->done = 1;
  r->rc = rc;
  r->status = status;
  curl_easy_cleanup(easy);
}

static CURL *
get(const char *url, struct result *r)
{
  CURL *e = curl_easy_init();

  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
  return e;
}

/* Runs the loop until n results are done; at most 10 s. */
static void
run(struct event_base *base, struct result *r, int n)
{
  for (int i = 0; i < 1000; i++) {
    int done = 0;

    for (int k = 0; k < n; k++)
      done += r[k].done;
    if (done == n)
      return;
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    usleep(10000);
  }
  fail_msg("transfers did not finish in time");
}

static void
test_concurrent_gets(void **state)
{
  struct event_base *base = event_base_new();
  struct http *h = http_new(base);
  struct result r[6];
  char url[128];

  (void)state;
  memset(r, 0, sizeof(r));
  for (int i = 0; i < 6; i++) {
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s", port,
             i == 5 ? "missing" : "hello.txt");
    assert_int_equal(http_start(h, get(url, &r[i]), on_done, &r[i]), 0);
  }
  /* Callbacks never run inside http_start. */
  for (int i = 0; i < 6; i++)
    assert_int_equal(r[i].done, 0);
  assert_int_equal(http_running(h), 6);
  run(base, r, 6);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(r[i].rc, CURLE_OK);
    assert_int_equal(r[i].status, 200);
    assert_string_equal(r[i].body, "hello camgate");
  }
  assert_int_equal(r[5].status, 404);
  assert_int_equal(http_running(h), 0);
  http_free(h);
  event_base_free(base);
}

static void
test_refused_and_cancel(void **state)
{
  struct event_base *base = event_base_new();
  struct http *h = http_new(base);
  struct result r[2];
  char url[128];
  CURL *cancelled;

  (void)state;
  memset(r, 0, sizeof(r));
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", free_port());
  assert_int_equal(http_start(h, get(url, &r[0]), on_done, &r[0]), 0);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello.txt", port);
  cancelled = get(url, &r[1]);
  assert_int_equal(http_start(h, cancelled, on_done, &r[1]), 0);
  http_cancel(h, cancelled);
  curl_easy_cleanup(cancelled);
  run(base, r, 1);
  assert_int_equal(r[0].rc, CURLE_COULDNT_CONNECT);
  assert_int_equal(r[1].done, 0);
  http_free(h);
  event_base_free(base);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_concurrent_gets),
    cmocka_unit_test(test_refused_and_cancel),
  };

  http_global_init();
  return cmocka_run_group_tests(tests, setup, teardown);
}
