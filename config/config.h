/* config.h - camgate.yaml as typed structs.
 *
 * config_load() reads the YAML file with libyaml, checks every key against
 * one schema table, and either returns a complete struct config or writes
 * every error it found as "FILE:LINE:COL: key: what was expected" lines into
 * the caller's buffer. Unknown keys are errors. A config is immutable once
 * loaded and shared by reference count, so a SIGHUP reload can swap it
 * while sessions that started on the old one finish on it. */
#ifndef CAMGATE_CONFIG_H
#define CAMGATE_CONFIG_H

#include <glib.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* An address, or a network in CIDR notation, from allow lists. */
struct cidr {
  int family;               /* AF_INET or AF_INET6 */
  unsigned char addr[16];   /* network byte order; 4 bytes used for v4 */
  int prefix;               /* 0..32 or 0..128 */
};

/* "host:port" as written in the config, resolved at listen time. */
struct endpoint {
  char *host;               /* NULL when not configured */
  int port;
};

enum channel_from {
  CHANNEL_NONE,             /* the camera is one camera */
  CHANNEL_RCPT,             /* from a recipient's local part */
  CHANNEL_SENDER,           /* from the envelope sender (MAIL FROM) */
  CHANNEL_SUBJECT,
  CHANNEL_BODY
};

struct camera_conf {
  char *id;                 /* [A-Za-z0-9_.-]{1,64}, unique */
  char *name;               /* display name; defaults to id */
  char *smtp_user;          /* NULL: no SMTP login */
  char *smtp_password_hash; /* crypt(3) hash, "$y$..." (secret) */
  struct cidr *allow;       /* sources accepted without AUTH */
  size_t nallow;
  /* One login covering many channels (an NVR): each channel becomes its
   * own camera "<id template>" downstream. */
  enum channel_from channel_from;
  GRegex *channel_re;       /* group 1 is the channel; NULL if none */
  char *channel_id;         /* template: "{camera}-{1}" by default */
  char *channel_name;       /* template: "{name} {1}" by default */
  char **kinds;             /* kinds announced to Home Assistant up front */
  size_t nkinds;
};

enum kind_field { KIND_SUBJECT, KIND_BODY, KIND_ANY };

/* A user pattern that names the kind; tried before the built-in ones. */
struct kind_pattern {
  enum kind_field field;
  GRegex *re;
  char *kind;
  char *state;              /* "start", "stop", "pulse" or NULL: unchanged */
};

struct tls_conf {
  char *cert;               /* PEM certificate chain; NULL: no TLS */
  char *key;                /* PEM private key (file mode 0600 enforced) */
  char *min_version;        /* "1.0", "1.1", "1.2" (default), "1.3" */
  char *ciphers;            /* OpenSSL cipher list for TLS <= 1.2, or NULL */
};

struct smtp_conf {
  struct endpoint listen;   /* plaintext + STARTTLS */
  struct endpoint listen_tls; /* implicit TLS (the "SSL" / 465 setting) */
  char *hostname;           /* in the banner and EHLO reply */
  size_t max_size;          /* SIZE limit, bytes */
  int max_sessions;
  int idle_timeout;         /* seconds without a command */
  int session_timeout;      /* seconds for a whole session */
  int max_recipients;
  int auth_failures;        /* failed logins per address before lockout */
  int auth_lockout;         /* seconds an address stays locked out */
  struct kind_pattern *kinds;
  size_t nkinds;
};

enum backend_type { BACKEND_MQTT };

struct mqtt_conf {
  char *host;
  int port;
  char *user;
  char *password;           /* secret; from password or password_file */
  char *client_id;
  int keepalive;            /* seconds */
  int tls;                  /* 0/1 */
  char *ca_file;            /* for tls; NULL: system store */
  int tls_insecure;         /* skip host name check */
  char *topic_prefix;       /* "camgate" */
  int discovery;            /* Home Assistant discovery on/off */
  char *discovery_prefix;   /* "homeassistant" */
  int hold;                 /* seconds ON stays for a pulse event */
  int start_timeout;        /* seconds before a start without stop ends */
};

struct backend_conf {
  char *name;               /* unique, referred to by rules */
  enum backend_type type;
  int retry_initial;        /* seconds before the first retry */
  int retry_max;            /* cap of the exponential backoff, seconds */
  int max_attempts;         /* 0: retry until retention */
  union {
    struct mqtt_conf mqtt;
  } u;
};

/* A glob list: an event field matches when any glob matches. Empty: any. */
struct match_list {
  char **globs;
  size_t n;
};

struct rule_conf {
  char *name;               /* "rule N" when not given */
  struct match_list camera; /* fnmatch(3) globs on camera id */
  struct match_list kind;
  struct match_list source;
  struct match_list state;
  char **backends;          /* names, each checked against backends */
  size_t nbackends;
  int cont;                 /* continue: true */
  int drop;                 /* drop: true - matched events go nowhere */
};

struct config {
  int refs;
  char *path;               /* the file it came from */
  char *log_level;          /* "info" */
  char *spool_path;         /* directory; created if missing */
  int retention;            /* seconds an event is kept once delivered */
  int shutdown_grace;       /* seconds SIGTERM waits for work in flight */
  struct tls_conf tls;
  struct smtp_conf smtp;
  struct camera_conf *cameras;
  size_t ncameras;
  struct backend_conf *backends;
  size_t nbackends;
  struct rule_conf *rules;
  size_t nrules;
};

/* Loads path. On success returns a config with one reference. On failure
 * returns NULL and writes one line per error (at most errsz bytes,
 * NUL-terminated) into err. */
struct config *config_load(const char *path, char *err, size_t errsz);

struct config *config_ref(struct config *cfg);
/* Drops a reference; frees (wiping secrets) at zero. NULL is fine. */
void config_unref(struct config *cfg);

/* Lookups; NULL when absent. */
const struct camera_conf *config_camera_by_user(const struct config *cfg,
                                                const char *user);
const struct camera_conf *config_camera_by_id(const struct config *cfg,
                                              const char *id);
/* The first camera whose allow list holds the address. */
const struct camera_conf *config_camera_by_addr(const struct config *cfg,
                                                const struct sockaddr *sa);
const struct backend_conf *config_backend(const struct config *cfg,
                                          const char *name);

/* Returns 1 when sa is inside c. */
int cidr_contains(const struct cidr *c, const struct sockaddr *sa);

/* Prints the one-line-per-item summary of `camgate check` to f. */
void config_print_summary(const struct config *cfg, FILE *f);

/* Parses "30", "30s", "5m", "2h", "7d" into seconds; -1 on error. */
long config_parse_duration(const char *s);
/* Parses "1024", "512K", "32M", "1G" into bytes; -1 on error. */
long long config_parse_size(const char *s);

#endif
