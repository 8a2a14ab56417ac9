/* auth.c - see auth.h.
 *
 * Everything here runs on the main (event loop) thread, so the success
 * cache, the throttle table and the crypt(3) work area are plain statics
 * with no locking. The one exception is the crypt(3) call of a check
 * started with auth_check_start(): a worker thread runs it on a job that
 * only it touches until it posts the job back through notify, each worker
 * with its own work area. */
#include "gateway/auth.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/event.h"
#include "gateway/log.h"
#include "gateway/notify.h"

#define AUTH_CACHE_SIZE 1024
#define AUTH_THROTTLE_SIZE 4096
#define AUTH_DIGEST_LEN 32
#define AUTH_SECRET_LEN 32
#define AUTH_WORKERS_MAX 4

/* Checked against when the user is unknown, so that a wrong user costs the
 * same yescrypt work as a wrong password and the reply time does not tell
 * which user names exist. Made with the default cost, like new hashes. */
static const char auth_dummy_hash[] =
  "$y$j9T$a7fworbKhR5/mVTahwxVB/$DeF1Ee4dvGpAkKUwS3FujPzQbYO0cpQWMqPcz3oZ4u7";

/* libxcrypt's work area is 32 KiB; one static copy, wiped after each use
 * because it holds material derived from the password. */
static struct crypt_data auth_crypt_data;
static atomic_ulong auth_ncrypt;

/* Success cache: keyed digests only, so a memory dump gives neither the
 * passwords nor anything to test guesses against without the secret. */
static unsigned char auth_secret[AUTH_SECRET_LEN];
static int auth_secret_ready;
static unsigned char auth_cache[AUTH_CACHE_SIZE][AUTH_DIGEST_LEN];
static size_t auth_cache_len;
static size_t auth_cache_next;

struct auth_throttle {
  unsigned char addr[16];   /* IPv6, or IPv4 as ::ffff:a.b.c.d */
  int used;
  int failures;             /* within the window opened by first */
  int64_t first;            /* ms, first failure of the window */
  int64_t last;             /* ms, latest failure; picks the eviction */
  int64_t locked_until;     /* ms; 0: not locked */
};

/* A linear scan is fine at this size: it runs once per login attempt, and
 * 4096 entries cost microseconds next to one yescrypt check. */
static struct auth_throttle auth_throttle[AUTH_THROTTLE_SIZE];
static int64_t (*auth_clock)(void) = mono_ms;

void
auth_set_clock(int64_t (*fn)(void))
{
  auth_clock = fn ? fn : mono_ms;
}

unsigned long
auth_crypt_calls(void)
{
  return atomic_load(&auth_ncrypt);
}

/* Runs crypt(3) in the work area cd and compares its output with hash in
 * constant time. Returns 1 on a match. */
static int
auth_crypt_matches_in(const char *password, const char *hash,
                      struct crypt_data *cd)
{
  const char *out;
  size_t hlen = strlen(hash);
  int ok = 0;

  atomic_fetch_add(&auth_ncrypt, 1);
  out = crypt_rn(password, hash, cd, (int)sizeof(*cd));
  if (out && strlen(out) == hlen && hlen > 0)
    ok = CRYPTO_memcmp(out, hash, hlen) == 0;
  OPENSSL_cleanse(cd, sizeof(*cd));
  return ok;
}

static int
auth_crypt_matches(const char *password, const char *hash)
{
  return auth_crypt_matches_in(password, hash, &auth_crypt_data);
}

char *
auth_hash_password(const char *password)
{
  char *salt;
  char *hash = NULL;
  const char *out;
  int saved;

  salt = crypt_gensalt_ra("$y$", 0, NULL, 0);
  if (salt == NULL)
    return NULL;
  atomic_fetch_add(&auth_ncrypt, 1);
  out = crypt_rn(password, salt, &auth_crypt_data,
                 (int)sizeof(auth_crypt_data));
  if (out)
    hash = xstrdup(out);
  saved = errno;
  OPENSSL_cleanse(&auth_crypt_data, sizeof(auth_crypt_data));
  free(salt);
  if (hash == NULL)
    errno = saved ? saved : EINVAL;
  return hash;
}

/* Computes the cache key for (user, password, hash). Returns 0, or -1 when
 * no key can be made; the caller then simply does not use the cache. */
static int
auth_cache_key(const char *user, const char *password, const char *hash,
               unsigned char out[AUTH_DIGEST_LEN])
{
  static const unsigned char sep = 0;
  EVP_MD_CTX *ctx;
  unsigned int len = 0;
  int ok;

  if (!auth_secret_ready) {
    if (RAND_bytes(auth_secret, sizeof(auth_secret)) != 1)
      return -1;
    auth_secret_ready = 1;
  }
  ctx = EVP_MD_CTX_new();
  if (ctx == NULL)
    return -1;
  ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1
    && EVP_DigestUpdate(ctx, auth_secret, sizeof(auth_secret)) == 1
    && EVP_DigestUpdate(ctx, user, strlen(user)) == 1
    && EVP_DigestUpdate(ctx, &sep, 1) == 1
    && EVP_DigestUpdate(ctx, password, strlen(password)) == 1
    && EVP_DigestUpdate(ctx, &sep, 1) == 1
    && EVP_DigestUpdate(ctx, hash, strlen(hash)) == 1
    && EVP_DigestFinal_ex(ctx, out, &len) == 1
    && len == AUTH_DIGEST_LEN;
  /* The context held password bytes; freeing it cleanses them. */
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(out, AUTH_DIGEST_LEN);
    return -1;
  }
  return 0;
}

static int
auth_cache_has(const unsigned char key[AUTH_DIGEST_LEN])
{
  int hit = 0;

  for (size_t i = 0; i < auth_cache_len; i++)
    hit |= CRYPTO_memcmp(auth_cache[i], key, AUTH_DIGEST_LEN) == 0;
  return hit;
}

static void
auth_cache_add(const unsigned char key[AUTH_DIGEST_LEN])
{
  memcpy(auth_cache[auth_cache_next], key, AUTH_DIGEST_LEN);
  auth_cache_next = (auth_cache_next + 1) % AUTH_CACHE_SIZE;
  if (auth_cache_len < AUTH_CACHE_SIZE)
    auth_cache_len++;
}

void
auth_cache_clear(void)
{
  OPENSSL_cleanse(auth_cache, sizeof(auth_cache));
  OPENSSL_cleanse(auth_secret, sizeof(auth_secret));
  auth_cache_len = 0;
  auth_cache_next = 0;
  auth_secret_ready = 0;
}

int
auth_throttle_clear(void)
{
  int64_t now = auth_clock();
  int locked = 0;

  for (size_t i = 0; i < AUTH_THROTTLE_SIZE; i++)
    locked += auth_throttle[i].used && auth_throttle[i].locked_until > now;
  memset(auth_throttle, 0, sizeof(auth_throttle));
  return locked;
}

static const struct camera_conf *
auth_find_user(const struct config *cfg, const char *user)
{
  for (size_t i = 0; i < cfg->ncameras; i++) {
    const struct camera_conf *cam = &cfg->cameras[i];

    if (cam->smtp_user && cam->smtp_password_hash
        && strcmp(cam->smtp_user, user) == 0)
      return cam;
  }
  return NULL;
}

const struct camera_conf *
auth_check(const struct config *cfg, const char *user, const char *password)
{
  const struct camera_conf *cam;
  unsigned char key[AUTH_DIGEST_LEN];
  int have_key;
  int ok;

  if (cfg == NULL || user == NULL || password == NULL)
    return NULL;
  cam = auth_find_user(cfg, user);
  if (cam == NULL) {
    (void)auth_crypt_matches(password, auth_dummy_hash);
    return NULL;
  }

  have_key = auth_cache_key(user, password, cam->smtp_password_hash,
                            key) == 0;
  if (have_key && auth_cache_has(key)) {
    OPENSSL_cleanse(key, sizeof(key));
    return cam;
  }

  ok = auth_crypt_matches(password, cam->smtp_password_hash);
  if (ok && have_key)
    auth_cache_add(key);
  OPENSSL_cleanse(key, sizeof(key));
  return ok ? cam : NULL;
}

/* Maps sa to the 16-byte key of the throttle table. Returns 0, or -1 for a
 * family that is not throttled. */
static int
auth_addr_key(const struct sockaddr *sa, unsigned char key[16])
{
  if (sa == NULL)
    return -1;
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

    memset(key, 0, 10);
    key[10] = 0xff;
    key[11] = 0xff;
    memcpy(key + 12, &in->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

    /* A v4-mapped address already has the form IPv4 is stored in. */
    memcpy(key, &in6->sin6_addr, 16);
    return 0;
  }
  return -1;
}

static struct auth_throttle *
auth_throttle_find(const unsigned char key[16])
{
  for (size_t i = 0; i < AUTH_THROTTLE_SIZE; i++) {
    struct auth_throttle *t = &auth_throttle[i];

    if (t->used && memcmp(t->addr, key, 16) == 0)
      return t;
  }
  return NULL;
}

/* Returns a slot for a new address: a free one, else the one whose last
 * failure is oldest, preferring any that is not locked out right now so a
 * flood of new addresses evicts itself before it frees a locked one. */
static struct auth_throttle *
auth_throttle_take(int64_t now)
{
  struct auth_throttle *best = NULL;
  int best_locked = 1;

  for (size_t i = 0; i < AUTH_THROTTLE_SIZE; i++) {
    struct auth_throttle *t = &auth_throttle[i];
    int locked;

    if (!t->used)
      return t;
    locked = t->locked_until > now;
    if (best == NULL || (best_locked && !locked)
        || (locked == best_locked && t->last < best->last)) {
      best = t;
      best_locked = locked;
    }
  }
  return best;
}

static int
auth_throttle_on(const struct config *cfg)
{
  return cfg && cfg->smtp.auth_failures > 0 && cfg->smtp.auth_lockout > 0;
}

int
auth_blocked(const struct config *cfg, const struct sockaddr *sa)
{
  unsigned char key[16];
  struct auth_throttle *t;
  int64_t now;
  int64_t left;

  if (!auth_throttle_on(cfg) || auth_addr_key(sa, key) < 0)
    return 0;
  t = auth_throttle_find(key);
  if (t == NULL || t->locked_until == 0)
    return 0;
  now = auth_clock();
  left = t->locked_until - now;
  if (left <= 0) {
    memset(t, 0, sizeof(*t));
    return 0;
  }
  /* Rounded up: "wait 0 seconds" must never be said to a locked address. */
  return (int)((left + 999) / 1000);
}

static void
auth_log_lockout(const unsigned char key[16], int failures, int seconds)
{
  static const unsigned char v4mapped[12] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
  };
  char text[INET6_ADDRSTRLEN];
  int v4 = memcmp(key, v4mapped, sizeof(v4mapped)) == 0;

  if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? key + 12 : key, text,
                sizeof(text)) == NULL)
    memcpy(text, "?", 2);
  log_warn("auth", "lockout addr=%s failures=%d seconds=%d msg=\"logins "
           "from this address refused (454) until then; a camera with a "
           "wrong password keeps retrying: fix its SMTP settings\"", text,
           failures, seconds);
}

void
auth_failed(const struct config *cfg, const struct sockaddr *sa)
{
  unsigned char key[16];
  struct auth_throttle *t;
  int64_t now;
  int64_t window;

  if (!auth_throttle_on(cfg) || auth_addr_key(sa, key) < 0)
    return;
  now = auth_clock();
  window = (int64_t)cfg->smtp.auth_lockout * 1000;
  t = auth_throttle_find(key);
  if (t == NULL) {
    t = auth_throttle_take(now);
    memset(t, 0, sizeof(*t));
    memcpy(t->addr, key, 16);
    t->used = 1;
  }

  /* A locked address should not have been let in to fail; counting it
   * would only stretch its lockout without end. */
  if (t->locked_until > now)
    return;
  if (t->locked_until != 0 || t->failures == 0 || now - t->first >= window) {
    t->failures = 0;
    t->first = now;
    t->locked_until = 0;
  }
  t->failures++;
  t->last = now;
  if (t->failures >= cfg->smtp.auth_failures) {
    t->locked_until = now + window;
    auth_log_lockout(key, t->failures, cfg->smtp.auth_lockout);
  }
}

void
auth_succeeded(const struct sockaddr *sa)
{
  unsigned char key[16];
  struct auth_throttle *t;

  if (auth_addr_key(sa, key) < 0)
    return;
  t = auth_throttle_find(key);
  if (t)
    memset(t, 0, sizeof(*t));
}

/* ---- checks off the loop thread ---- */

struct auth_job {
  struct config *cfg;              /* ref: cam points into it */
  const struct camera_conf *cam;   /* NULL: unknown user, dummy hash */
  char *password;                  /* wiped by the worker after use */
  char *hash;
  unsigned char key[AUTH_DIGEST_LEN];
  int have_key;
  int ok;                          /* set by the worker */
  auth_done_fn done;               /* NULL once cancelled */
  void *arg;
  struct auth_job *next;           /* in the workers' queue */
  /* Loop thread only: checks of the same login and password that came
   * while this one was running wait for its verdict instead of paying
   * for a crypt(3) of their own (ten channels of one NVR logging in at
   * once cost one check). A follower has no password and is never
   * queued. */
  struct auth_job *followers;
  struct auth_job *pending_next;   /* in auth_pending, leaders only */
};

static struct auth_job *auth_pending;  /* leaders not yet answered */

struct auth_pool {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  pthread_t threads[AUTH_WORKERS_MAX];
  int nthreads;
  int stopping;
  struct notify *notify;
  struct auth_job *head;
  struct auth_job *tail;
};

static struct auth_pool auth_pool = {
  .lock = PTHREAD_MUTEX_INITIALIZER,
  .cond = PTHREAD_COND_INITIALIZER,
};

static void
auth_job_free(struct auth_job *job)
{
  if (job->password) {
    OPENSSL_cleanse(job->password, strlen(job->password));
    free(job->password);
  }
  free(job->hash);
  OPENSSL_cleanse(job->key, sizeof(job->key));
  config_unref(job->cfg);
  free(job);
}

/* Answers job and everyone waiting on it with cam, then frees them. */
static void
auth_job_answer(struct auth_job *job, const struct camera_conf *cam)
{
  struct auth_job **pp = &auth_pending;

  while (*pp && *pp != job)
    pp = &(*pp)->pending_next;
  if (*pp)
    *pp = job->pending_next;
  if (job->done)
    job->done(job->arg, cam);
  while (job->followers) {
    struct auth_job *f = job->followers;

    job->followers = f->followers;
    if (f->done)
      f->done(f->arg, cam);
    free(f);
  }
  auth_job_free(job);
}

/* On the loop thread: the worker's verdict arrives. The success cache is
 * filled here, never by a worker. */
static void
auth_job_finish(void *arg)
{
  struct auth_job *job = arg;
  const struct camera_conf *cam = job->ok ? job->cam : NULL;

  if (cam && job->have_key)
    auth_cache_add(job->key);
  auth_job_answer(job, cam);
}

static void *
auth_worker(void *arg)
{
  struct crypt_data *cd = xcalloc(1, sizeof(*cd));

  (void)arg;
  pthread_mutex_lock(&auth_pool.lock);
  for (;;) {
    struct auth_job *job;

    while (auth_pool.head == NULL && !auth_pool.stopping)
      pthread_cond_wait(&auth_pool.cond, &auth_pool.lock);
    if (auth_pool.stopping)
      break;
    job = auth_pool.head;
    auth_pool.head = job->next;
    if (auth_pool.head == NULL)
      auth_pool.tail = NULL;
    pthread_mutex_unlock(&auth_pool.lock);
    job->ok = auth_crypt_matches_in(job->password, job->hash, cd);
    OPENSSL_cleanse(job->password, strlen(job->password));
    notify_post(auth_pool.notify, auth_job_finish, job);
    pthread_mutex_lock(&auth_pool.lock);
  }
  pthread_mutex_unlock(&auth_pool.lock);
  free(cd);
  return NULL;
}

int
auth_workers_start(struct notify *n, int nthreads)
{
  if (nthreads > AUTH_WORKERS_MAX)
    nthreads = AUTH_WORKERS_MAX;
  auth_pool.notify = n;
  auth_pool.stopping = 0;
  for (int i = 0; i < nthreads; i++) {
    if (pthread_create(&auth_pool.threads[i], NULL, auth_worker, NULL) != 0)
      break;
    auth_pool.nthreads++;
  }
  return auth_pool.nthreads > 0 ? 0 : -1;
}

void
auth_workers_stop(void)
{
  struct auth_job *job;

  if (auth_pool.nthreads == 0)
    return;
  pthread_mutex_lock(&auth_pool.lock);
  auth_pool.stopping = 1;
  pthread_cond_broadcast(&auth_pool.cond);
  pthread_mutex_unlock(&auth_pool.lock);
  for (int i = 0; i < auth_pool.nthreads; i++)
    pthread_join(auth_pool.threads[i], NULL);
  auth_pool.nthreads = 0;
  /* Checks never started: their sessions are gone or going, so they are
   * answered as failures (a success could not be used any more). */
  while ((job = auth_pool.head) != NULL) {
    auth_pool.head = job->next;
    auth_job_answer(job, NULL);
  }
  auth_pool.tail = NULL;
  auth_pool.notify = NULL;
}

const struct camera_conf *
auth_check_start(struct config *cfg, const char *user, const char *password,
                 auth_done_fn done, void *arg, struct auth_job **jobp)
{
  const struct camera_conf *cam;
  struct auth_job *job;

  *jobp = NULL;
  if (auth_pool.nthreads == 0 || cfg == NULL || user == NULL ||
      password == NULL)
    return auth_check(cfg, user, password);
  job = xcalloc(1, sizeof(*job));
  cam = auth_find_user(cfg, user);
  if (cam) {
    job->have_key = auth_cache_key(user, password, cam->smtp_password_hash,
                                   job->key) == 0;
    if (job->have_key && auth_cache_has(job->key)) {
      OPENSSL_cleanse(job->key, sizeof(job->key));
      free(job);
      return cam;
    }
    for (struct auth_job *l = auth_pending; job->have_key && l;
         l = l->pending_next) {
      if (l->cfg == cfg && l->have_key &&
          CRYPTO_memcmp(l->key, job->key, AUTH_DIGEST_LEN) == 0) {
        OPENSSL_cleanse(job->key, sizeof(job->key));
        memset(job, 0, sizeof(*job));
        job->done = done;
        job->arg = arg;
        job->followers = l->followers;
        l->followers = job;
        *jobp = job;
        return NULL;
      }
    }
  }
  job->cfg = config_ref(cfg);
  job->cam = cam;
  job->password = xstrdup(password);
  job->hash = xstrdup(cam ? cam->smtp_password_hash : auth_dummy_hash);
  job->done = done;
  job->arg = arg;
  if (job->have_key) {
    job->pending_next = auth_pending;
    auth_pending = job;
  }
  pthread_mutex_lock(&auth_pool.lock);
  if (auth_pool.tail)
    auth_pool.tail->next = job;
  else
    auth_pool.head = job;
  auth_pool.tail = job;
  pthread_cond_signal(&auth_pool.cond);
  pthread_mutex_unlock(&auth_pool.lock);
  *jobp = job;
  return NULL;
}

void
auth_job_cancel(struct auth_job *job)
{
  if (job)
    job->done = NULL;
}
