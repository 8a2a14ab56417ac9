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

/* What a rule does for one backend, as written: a rule's item of
 * `backends`, or the `defaults` of a backend or a camera, or a camera's
 * `limit`. A string key not given is NULL; an integer key not given has
 * its ACT_* bit clear in set, so a more general level can fill it in.
 * Templates and values keep the syntax of the file (see config_action for
 * the merged, parsed form). */
#define ACT_COOLDOWN 0x01u
#define ACT_BURST 0x02u
#define ACT_DAILY_CAP 0x04u
#define ACT_SUMMARY 0x08u

struct action_conf {
  char *priority;           /* min, low, default, high, urgent */
  char *title;              /* template */
  char *message;            /* template */
  char *snapshot;           /* "640x480", "full" or "none" */
  char *rate;               /* "10/h": notifications per period */
  int cooldown;             /* seconds */
  int burst;
  int daily_cap;
  int summary;              /* 0/1 */
  unsigned set;             /* ACT_* of the integer keys given */
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
  struct action_conf defaults; /* for every rule's action on this camera */
  struct action_conf limit; /* camera-wide: cooldown, rate, daily_cap */
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
  int max_sessions_per_address; /* open sessions from one address */
  int idle_timeout;         /* seconds without a command */
  int session_timeout;      /* seconds for a whole session */
  int max_recipients;
  int auth_failures;        /* failed logins per address before lockout */
  int auth_lockout;         /* seconds an address stays locked out */
  struct kind_pattern *kinds;
  size_t nkinds;
};

enum backend_type { BACKEND_MQTT, BACKEND_EMAIL, BACKEND_NTFY };

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
  char *snapshot;           /* NULL: the camera's bytes; "640x480" box,
                             * "full" (checked) or "none" */
  int quality;              /* of thumbnails, 1..100 */
};

/* E-mail onward (backends/email.c). */
enum email_transport { EMAIL_SMTP, EMAIL_SMTP_XOAUTH2, EMAIL_GRAPH };
enum email_tls { EMAIL_TLS_STARTTLS, EMAIL_TLS_IMPLICIT, EMAIL_TLS_NONE };
enum email_mode {
  EMAIL_MODE_COMPOSE,       /* a new mail from the event's fields */
  EMAIL_MODE_FORWARD        /* the camera's own message, re-sent */
};
enum oauth_provider { OAUTH_MICROSOFT, OAUTH_GOOGLE };
enum oauth_flow {
  OAUTH_FLOW_DEFAULT,       /* device (Microsoft), auth_code (Google) */
  OAUTH_FLOW_DEVICE,        /* RFC 8628 device authorization grant */
  OAUTH_FLOW_AUTH_CODE,     /* authorization code with PKCE */
  OAUTH_FLOW_CLIENT_CREDENTIALS /* app-only, no login step */
};

/* Every URL is filled in by the loader from provider and tenant when
 * not given, so tests can point each one at a local fake. */
struct oauth_conf {
  int provider;             /* enum oauth_provider */
  int flow;                 /* enum oauth_flow, never DEFAULT once loaded */
  char *client_id;
  char *client_secret;      /* secret; Google and app-only need one */
  char *tenant;             /* Microsoft: consumers, organizations, id */
  char *scope;
  char *authority;          /* https://login.microsoftonline.com */
  char *token_url;
  char *device_code_url;
  char *auth_url;
  char *redirect_uri;       /* auth_code: where the browser lands */
  char *token_file;         /* JSON, mode 0600, written atomically */
  int refresh_margin;       /* seconds before expiry to refresh */
  int refresh_every;        /* refresh at least this often, seconds */
};

struct email_conf {
  int transport;            /* enum email_transport */
  int mode;                 /* enum email_mode */
  char *host;               /* SMTP server */
  int port;                 /* 587 (starttls), 465 (implicit), 25 */
  int tls;                  /* enum email_tls */
  char *ca_file;            /* NULL: the system store */
  char *user;               /* SMTP login; defaults to from */
  char *password;           /* secret; transport smtp */
  char *from;               /* the authorized mailbox */
  char *from_name;
  char **to;
  size_t nto;
  char **cc;
  size_t ncc;
  int reply_to_camera;      /* Reply-To: the camera's envelope sender */
  char *subject;            /* template */
  char *body;               /* template */
  char *time_zone;          /* IANA name for {time}; NULL: local */
  int attach;               /* attach snapshots */
  size_t max_size;          /* the provider's message size limit */
  size_t thumbnail_over;    /* larger pictures go as thumbnails; 0: no */
  char *snapshot;           /* the thumbnails' box, "640x480", as written */
  int snapshot_w;           /* its box; 0 x 0 for full, -1 for none */
  int snapshot_h;
  int quality;              /* of thumbnails, 1..100 */
  int timeout;              /* seconds for one transfer */
  int max_per_minute;       /* sends a minute at most; 0: no cap */
  char *graph_url;          /* https://graph.microsoft.com/v1.0 */
  char *mailbox;            /* app-only Graph: /users/{mailbox} */
  struct oauth_conf oauth;
};

/* ntfy push (backends/ntfy.c). */
#define NTFY_MAX_ACTIONS 3        /* ntfy shows at most three buttons */
enum ntfy_action_type { NTFY_ACTION_VIEW, NTFY_ACTION_HTTP };

struct ntfy_action_conf {
  int type;                 /* enum ntfy_action_type */
  char *label;              /* template */
  char *url;                /* template */
  char *method;             /* http: POST unless given */
  char *body;               /* http: template, or NULL */
  int clear;                /* dismiss the notification once tapped */
};

struct ntfy_conf {
  char *url;                /* the server: https://ntfy.sh */
  char *topic;
  char *token;              /* secret; access token, sent as Bearer */
  char *user;               /* with password: Basic */
  char *password;           /* secret */
  int priority;             /* 1..5 */
  char **tags;              /* templates; none: an emoji for the kind */
  size_t ntags;
  char *click;              /* template of a URL, or NULL */
  char *icon;               /* template of a URL, or NULL */
  struct ntfy_action_conf *actions;
  size_t nactions;
  char *title;              /* template; NULL: "{camera_name}: {kind}" */
  char *message;            /* template; NULL: the camera's own text */
  char *snapshot;           /* "640x480", "full" or "none", as written */
  int snapshot_w;           /* its box; 0 x 0 for full, -1 for none */
  int snapshot_h;
  int quality;              /* of thumbnails, 1..100 */
  size_t max_attachment;    /* larger pictures are made smaller */
  int timeout;              /* seconds for one request */
  char *ca_file;            /* NULL: the system store */
};

struct backend_conf {
  char *name;               /* unique, referred to by rules */
  enum backend_type type;
  int retry_initial;        /* seconds before the first retry */
  int retry_max;            /* cap of the exponential backoff, seconds */
  int max_attempts;         /* 0: retry until retention */
  struct action_conf defaults; /* for every rule's action on it */
  union {
    struct mqtt_conf mqtt;
    struct email_conf email;
    struct ntfy_conf ntfy;
  } u;
};

/* A glob list: an event field matches when any glob matches. Empty: any. */
struct match_list {
  char **globs;
  size_t n;
};

/* A label the event must carry, with a value one of the globs match. */
struct label_match {
  char *key;
  struct match_list values;
};

enum match_snapshot {
  MATCH_SNAPSHOT_ANY,
  MATCH_SNAPSHOT_YES,       /* the event has a JPEG or PNG */
  MATCH_SNAPSHOT_NO
};

struct rule_conf {
  char *name;               /* "rule N" when not given */
  struct match_list camera; /* fnmatch(3) globs on camera id */
  struct match_list kind;
  struct match_list source;
  struct match_list state;
  struct label_match *labels; /* every one must match */
  size_t nlabels;
  struct match_list days;   /* "mon", "sat-sun", in the config's zone */
  struct match_list time;   /* "23:00-06:30" windows, in the zone */
  int snapshot;             /* enum match_snapshot */
  char **backends;          /* names, each checked against backends */
  struct action_conf *actions; /* NULL, or per backend what it gets */
  size_t nbackends;
  int cont;                 /* continue: true */
  int drop;                 /* drop: true - matched events go nowhere */
};

/* A rule's action for one backend and camera with everything merged (see
 * config_action). Strings point into the config. */
struct action {
  const char *priority;     /* "default" unless set */
  const char *title;        /* template; NULL: the backend's own */
  const char *message;      /* template; NULL: the backend's own */
  int snapshot;             /* 0: send no snapshot */
  int snapshot_w;           /* box it is fitted into; 0 x 0: as sent */
  int snapshot_h;
  int limited;              /* 1: rate limits apply (not to mqtt) */
  int cooldown;             /* seconds between notifications; 0: none */
  int rate_n;               /* rate_n per rate_per seconds; 0: no bucket */
  int rate_per;
  int burst;                /* the bucket's size */
  int daily_cap;            /* per local day; 0: none */
  int summary;              /* held back: a summary when quiet again */
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
  char *timezone;           /* IANA name; NULL: the process's local zone */
  GTimeZone *tz;            /* of days, time windows and daily caps */
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
/* Returns 1 when a and b have the same type and every key of it the same
 * value, secrets included (a reload keeps such a backend running). */
int config_backend_equal(const struct backend_conf *a,
                         const struct backend_conf *b);

/* Returns 1 when sa is inside c. */
int cidr_contains(const struct cidr *c, const struct sockaddr *sa);

/* Prints to f one "warning: FILE: KEY: ..." line for each thing that is
 * valid but probably a mistake (no cameras, backends or rules; an
 * allow_from of every address; a rule no camera id can match). Returns
 * how many. */
int config_print_warnings(const struct config *cfg, FILE *f);

/* Prints the one-line-per-item summary of `camgate check` to f. */
void config_print_summary(const struct config *cfg, FILE *f);

/* The action of rule for backend on camera: built-in defaults, then the
 * backend's `defaults`, the camera's `defaults`, and the rule's own item
 * for the backend, each over the one before. camera is an event's camera
 * id (an NVR channel's id finds its NVR, see config_camera_for).
 * out->limited is 0 for mqtt backends: their limits are never applied.
 * Returns 0, or -1 when the rule does not name the backend (out then
 * holds the merged defaults). */
int config_action(const struct config *cfg, const char *rule,
                  const char *backend, const char *camera,
                  struct action *out);
/* The camera-wide limit of camera (cooldown, rate, burst, daily_cap);
 * all zero when it has none. */
void config_camera_limit(const struct config *cfg, const char *camera,
                         struct action *out);
/* The camera an event's camera id belongs to: the camera with that id,
 * else the first camera with a channel pattern whose id template
 * ("{camera}-{1}") fits it. NULL when none. */
const struct camera_conf *config_camera_for(const struct config *cfg,
                                            const char *camera);

/* Returns 1 when some backend re-sends the camera's own message (e-mail
 * mode forward), so ingest keeps it with the event. */
int config_keeps_raw(const struct config *cfg);

/* The values of rules. Each returns 0, or -1 when s is not valid.
 * "10/h", "3/5m", "100/1d": *n per *per seconds. */
int config_parse_rate(const char *s, int *n, int *per);
/* "23:00-06:30": minutes of the day, *from inclusive, *to exclusive
 * ("24:00" ends a day); a window with from > to crosses midnight. */
int config_parse_window(const char *s, int *from, int *to);
/* "mon", "fri-sun", "sat-mon": ORs the days into *mask (bit 0 Monday). */
int config_parse_days(const char *s, unsigned *mask);
/* "640x480" (a box), "full" (as sent) or "none": *w and *h are the box,
 * 0 x 0 for full, -1 x -1 for none. */
int config_parse_snapshot(const char *s, int *w, int *h);

/* Parses "30", "30s", "5m", "2h", "7d" into seconds; -1 on error. */
long config_parse_duration(const char *s);
/* Parses "1024", "512K", "32M", "1G" into bytes; -1 on error. */
long long config_parse_size(const char *s);

#endif
