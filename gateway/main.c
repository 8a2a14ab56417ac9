/* main.c - camgate's command line.
 *
 *   camgate run -c FILE      run in the foreground, logging to stderr
 *   camgate check -c FILE    validate FILE and summarise it
 *   camgate check -c FILE --event camera=ID kind=K ...
 *                            where the rules send such an event
 *   camgate passwd           hash a camera password for the config
 *   camgate oauth login BACKEND -c FILE
 *                            sign an e-mail backend in (OAuth 2.0)
 *   camgate --version | --help
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/auth.h"
#include "gateway/check.h"
#include "gateway/daemon.h"
#include "gateway/log.h"
#include "gateway/module.h"
#include "gateway/tls.h"
#include "gateway/token.h"

#define EXIT_USAGE 2

static const char usage_text[] =
  "usage: camgate run -c FILE      receive camera alerts and deliver them\n"
  "       camgate check -c FILE    validate a config and summarise it\n"
  "       camgate check -c FILE --event camera=ID kind=K [source=S]\n"
  "             [state=S] [time=2026-12-03T23:30] [snapshot=yes]\n"
  "             [label.NAME=V] ...   where the rules send such an event\n"
  "       camgate passwd           print a password hash for the config\n"
  "       camgate oauth login BACKEND -c FILE\n"
  "                                sign an e-mail backend in (OAuth 2.0)\n"
  "       camgate --version\n"
  "       camgate --help\n"
  "\n"
  "camgate takes the alerts IP cameras send by SMTP, stores each one\n"
  "durably and routes it by rules to MQTT (Home Assistant), ntfy pushes\n"
  "and e-mail sent onward with OAuth 2.0. The config is YAML;\n"
  "config/camgate.example.yaml documents every key.\n";

static int
usage(FILE *f, int rc)
{
  fputs(usage_text, f);
  return rc;
}

/* Finds -c FILE / --config FILE / --config=FILE in argv. */
static const char *
config_arg(int argc, char **argv)
{
  const char *path = NULL;

  for (int i = 2; i < argc; i++) {
    if ((strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) &&
        i + 1 < argc)
      path = argv[++i];
    else if (strncmp(argv[i], "--config=", 9) == 0)
      path = argv[i] + 9;
    else
      return NULL;
  }
  return path;
}

/* Whether cfg has a backend that needs camgate-http.so, and if so
 * whether it loads: 0, or -1 with the reason printed. */
static int
check_module(const struct config *cfg, const struct http_module **m)
{
  GString *names = g_string_new(NULL);
  char err[1024] = "";

  *m = NULL;
  for (size_t i = 0; i < cfg->nbackends; i++) {
    const struct backend_conf *bc = &cfg->backends[i];

    if (bc->type == BACKEND_EMAIL || bc->type == BACKEND_NTFY)
      g_string_append_printf(names, "%s%s", names->len ? ", " : "",
                             bc->name);
  }
  if (names->len > 0 && (*m = http_module(err, sizeof(err))) == NULL)
    fprintf(stderr, "camgate: backends %s: %s\n", names->str, err);
  g_string_free(names, TRUE);
  return *m == NULL && err[0] ? -1 : 0;
}

/* One line per OAuth account: whether its tokens are there. */
static void
check_tokens(const struct config *cfg, const struct http_module *m,
             const char *path)
{
  if (m == NULL)
    return;
  for (size_t i = 0; i < cfg->nbackends; i++) {
    const struct backend_conf *bc = &cfg->backends[i];
    const struct oauth_conf *oc = &bc->u.email.oauth;
    struct token t = {0};
    char err[256];
    const char *state = "ok";

    if (bc->type != BACKEND_EMAIL || bc->u.email.transport == EMAIL_SMTP)
      continue;
    if (oc->token_file == NULL)
      state = "app_only";
    else if (m->token_load(oc->token_file, &t, err, sizeof(err)) < 0)
      state = "needs_login (no token file)";
    else if (t.needs_login || t.refresh_token == NULL)
      state = "needs_login";
    printf("oauth %s state=%s", bc->name, state);
    if (strncmp(state, "needs_login", 11) == 0)
      printf(" run=\"camgate oauth login %s -c %s\"", bc->name, path);
    putchar('\n');
    m->token_clear(&t);
  }
}

static int
cmd_oauth(int argc, char **argv)
{
  char err[16384] = "";
  const struct backend_conf *bc;
  const struct http_module *m;
  struct config *cfg;
  const char *path;
  int rc;

  path = argc >= 4 ? config_arg(argc - 2, argv + 2) : NULL;
  if (path == NULL || strcmp(argv[2], "login") != 0) {
    fprintf(stderr, "camgate: usage: camgate oauth login BACKEND -c "
            "FILE\n");
    return EXIT_USAGE;
  }
  cfg = config_load(path, err, sizeof(err));
  if (cfg == NULL) {
    fprintf(stderr, "%s", err);
    return EXIT_USAGE;
  }
  bc = config_backend(cfg, argv[3]);
  if (bc == NULL) {
    fprintf(stderr, "camgate: no backend named %s in %s\n", argv[3], path);
    config_unref(cfg);
    return EXIT_USAGE;
  }
  m = http_module(err, sizeof(err));
  if (m == NULL) {
    fprintf(stderr, "camgate: %s\n", err);
    config_unref(cfg);
    return 1;
  }
  rc = m->oauth_login(bc, stdin, stdout, stderr);
  config_unref(cfg);
  return rc;
}

/* The index of "--event" in argv, or argc. */
static int
event_arg(int argc, char **argv)
{
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], "--event") == 0)
      return i;
  return argc;
}

static int
cmd_check_event(const char *path, int n, char **args)
{
  char err[16384] = "";
  struct config *cfg = config_load(path, err, sizeof(err));
  struct cam_event *ev;

  if (cfg == NULL) {
    fprintf(stderr, "%s", err);
    fprintf(stderr, "camgate: %s is not valid\n", path);
    return EXIT_USAGE;
  }
  ev = check_event_parse(cfg, n, args, err, sizeof(err));
  if (ev == NULL) {
    fprintf(stderr, "camgate: --event: %s\n", err);
    config_unref(cfg);
    return EXIT_USAGE;
  }
  check_event_print(cfg, ev, stdout);
  cam_event_free(ev);
  config_unref(cfg);
  return 0;
}

static int
cmd_check(const char *path)
{
  char err[16384] = "";
  const struct http_module *m;
  struct config *cfg = config_load(path, err, sizeof(err));

  if (cfg == NULL) {
    fprintf(stderr, "%s", err);
    fprintf(stderr, "camgate: %s is not valid; nothing was started\n", path);
    return EXIT_USAGE;
  }
  if (cfg->tls.cert) {
    SSL_CTX *ctx = tls_server_ctx(&cfg->tls, err, sizeof(err));

    if (ctx == NULL) {
      fprintf(stderr, "%s: tls: %s\n", path, err);
      config_unref(cfg);
      return EXIT_USAGE;
    }
    SSL_CTX_free(ctx);
  }
  config_print_summary(cfg, stdout);
  config_print_warnings(cfg, stdout);
  check_print_kind_warnings(cfg, stdout);
  if (check_module(cfg, &m) < 0) {
    fprintf(stderr, "camgate: %s is valid, but its HTTP backends cannot "
            "run without %s\n", path, HTTP_MODULE_FILE);
    config_unref(cfg);
    return 1;
  }
  check_tokens(cfg, m, path);
  printf("config %s ok\n", path);
  config_unref(cfg);
  return 0;
}

/* Reads one line without echo from the terminal, or from stdin when it is
 * not a terminal (for scripts: `echo pass | camgate passwd`). */
static int
read_secret(const char *prompt, char *buf, size_t bufsz)
{
  struct termios old;
  struct termios quiet;
  int tty = isatty(STDIN_FILENO);
  size_t n;

  if (tty) {
    fputs(prompt, stderr);
    tcgetattr(STDIN_FILENO, &old);
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  if (fgets(buf, (int)bufsz, stdin) == NULL)
    buf[0] = '\0';
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputs("\n", stderr);
  }
  n = strlen(buf);
  if (n > 0 && buf[n - 1] != '\n' && n + 1 == bufsz)
    return -2;
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  return n > 0 ? 0 : -1;
}

static int
cmd_passwd(void)
{
  /* Longer passwords would not fit camgate's AUTH buffers: refuse them
   * here rather than hash a password no camera could log in with. */
  char pass[256];
  char again[256];
  char *hash;
  int r = read_secret("Camera password: ", pass, sizeof(pass));

  if (r != 0) {
    explicit_bzero(pass, sizeof(pass));
    fprintf(stderr, "camgate: %s\n", r == -2 ? "password longer than 254 "
            "bytes" : "empty password");
    return EXIT_USAGE;
  }
  if (isatty(STDIN_FILENO)) {
    read_secret("Again: ", again, sizeof(again));
    if (strcmp(pass, again) != 0) {
      explicit_bzero(pass, sizeof(pass));
      explicit_bzero(again, sizeof(again));
      fprintf(stderr, "camgate: the passwords differ\n");
      return EXIT_USAGE;
    }
    explicit_bzero(again, sizeof(again));
  }
  hash = auth_hash_password(pass);
  explicit_bzero(pass, sizeof(pass));
  if (hash == NULL) {
    fprintf(stderr, "camgate: cannot hash: %s\n", strerror(errno));
    return 1;
  }
  printf("%s\n", hash);
  free(hash);
  return 0;
}

int
main(int argc, char **argv)
{
  const char *cmd = argc > 1 ? argv[1] : NULL;
  const char *path;
  int ev_at;

  if (cmd == NULL)
    return usage(stderr, EXIT_USAGE);
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
      strcmp(cmd, "help") == 0)
    return usage(stdout, 0);
  if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
    printf("camgate %s\n", CAMGATE_VERSION);
    return 0;
  }
  if (strcmp(cmd, "passwd") == 0)
    return argc == 2 ? cmd_passwd() : usage(stderr, EXIT_USAGE);
  if (strcmp(cmd, "oauth") == 0)
    return cmd_oauth(argc, argv);
  if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
    fprintf(stderr, "camgate: unknown command '%s'\n", cmd);
    return usage(stderr, EXIT_USAGE);
  }
  ev_at = strcmp(cmd, "check") == 0 ? event_arg(argc, argv) : argc;
  path = config_arg(ev_at, argv);
  if (path == NULL) {
    fprintf(stderr, "camgate: %s needs -c FILE\n", cmd);
    return usage(stderr, EXIT_USAGE);
  }
  if (ev_at < argc)
    return cmd_check_event(path, argc - ev_at - 1, argv + ev_at + 1);
  if (strcmp(cmd, "check") == 0)
    return cmd_check(path);
  return daemon_run(path);
}
