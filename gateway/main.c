/* main.c - camgate's command line.
 *
 *   camgate run -c FILE      run in the foreground, logging to stderr
 *   camgate check -c FILE    validate FILE and summarise it
 *   camgate passwd           hash a camera password for the config
 *   camgate --version | --help
 *
 * Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/auth.h"
#include "gateway/daemon.h"
#include "gateway/log.h"
#include "gateway/tls.h"

#define EXIT_USAGE 2

static const char usage_text[] =
  "usage: camgate run -c FILE      receive camera alerts and deliver them\n"
  "       camgate check -c FILE    validate a config and summarise it\n"
  "       camgate passwd           print a password hash for the config\n"
  "       camgate --version\n"
  "       camgate --help\n"
  "\n"
  "camgate takes the alerts IP cameras send by SMTP, stores each one\n"
  "durably and routes it by rules to MQTT (Home Assistant). The config is\n"
  "YAML; config/camgate.example.yaml documents every key.\n";

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

static int
cmd_check(const char *path)
{
  char err[16384] = "";
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
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  return n > 0 ? 0 : -1;
}

static int
cmd_passwd(void)
{
  char pass[512];
  char again[512];
  char *hash;

  if (read_secret("Camera password: ", pass, sizeof(pass)) != 0) {
    fprintf(stderr, "camgate: empty password\n");
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
  if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0) {
    fprintf(stderr, "camgate: unknown command '%s'\n", cmd);
    return usage(stderr, EXIT_USAGE);
  }
  path = config_arg(argc, argv);
  if (path == NULL) {
    fprintf(stderr, "camgate: %s needs -c FILE\n", cmd);
    return usage(stderr, EXIT_USAGE);
  }
  if (strcmp(cmd, "check") == 0)
    return cmd_check(path);
  return daemon_run(path);
}
