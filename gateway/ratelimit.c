/* ratelimit.c - see ratelimit.h. */
#include "gateway/ratelimit.h"

#include <string.h>

#define RL_DAY_S 86400

static int64_t
rl_max(int64_t a, int64_t b)
{
  return a > b ? a : b;
}

static int64_t
rl_floor_div(int64_t a, int64_t b)
{
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

void
ratelimit_clock(struct rl_clock *c, GTimeZone *tz, int64_t now)
{
  GDateTime *utc = g_date_time_new_from_unix_utc(rl_floor_div(now, 1000));
  GDateTime *local = NULL;
  GDateTime *midnight = NULL;
  GDateTime *next = NULL;
  int64_t off;

  memset(c, 0, sizeof(*c));
  c->now = now;
  if (utc)
    local = tz ? g_date_time_to_timezone(utc, tz) : g_date_time_ref(utc);
  if (local == NULL) {
    c->day = rl_floor_div(now, RL_DAY_S * 1000LL);
    c->next_day = (c->day + 1) * RL_DAY_S * 1000LL;
  } else {
    off = g_date_time_get_utc_offset(local) / G_TIME_SPAN_SECOND;
    c->day = rl_floor_div(g_date_time_to_unix(local) + off, RL_DAY_S);
    midnight = g_date_time_new(g_date_time_get_timezone(local),
                               g_date_time_get_year(local),
                               g_date_time_get_month(local),
                               g_date_time_get_day_of_month(local), 0, 0, 0);
    next = midnight ? g_date_time_add_days(midnight, 1) : NULL;
    c->next_day = next ? g_date_time_to_unix(next) * 1000
                       : (rl_floor_div(now, 1000) + RL_DAY_S) * 1000;
  }
  if (next)
    g_date_time_unref(next);
  if (midnight)
    g_date_time_unref(midnight);
  if (local)
    g_date_time_unref(local);
  if (utc)
    g_date_time_unref(utc);
}

int
ratelimit_active(const struct rl_limits *lim)
{
  return lim && (lim->cooldown_ms > 0 || lim->rate_n > 0 ||
                 lim->daily_cap > 0);
}

/* The bucket's fill at t (never before the fill it was computed at). */
static int64_t
rl_fill(const struct rl_state *st, const struct rl_limits *lim, int64_t t)
{
  int64_t full = (int64_t)lim->burst * RL_ONE;
  double add;

  if (st->tokens_at == 0)
    return full;
  if (t <= st->tokens_at || st->tokens >= full)
    return st->tokens < full ? st->tokens : full;
  add = (double)(t - st->tokens_at) * lim->rate_n * (double)RL_ONE /
        (double)lim->rate_per_ms;
  if (add >= (double)(full - st->tokens))
    return full;
  return st->tokens + (int64_t)add;
}

static int64_t
rl_bucket_release(const struct rl_state *st, const struct rl_limits *lim,
                  int64_t now)
{
  int64_t t = rl_max(now, st->tokens_at);
  int64_t have = rl_fill(st, lim, t);
  double ms;
  int64_t wait;

  if (have >= RL_ONE)
    return t;
  /* The time the missing part takes to drip in, rounded up, plus one ms
   * so that rl_fill's rounding down still finds a whole token. */
  ms = (double)(RL_ONE - have) * (double)lim->rate_per_ms /
       ((double)lim->rate_n * (double)RL_ONE);
  wait = (int64_t)ms;
  if ((double)wait < ms)
    wait++;
  return t + wait + 1;
}

int64_t
ratelimit_release(const struct rl_state *st, const struct rl_limits *lim,
                  const struct rl_clock *clk, const char **reason)
{
  int64_t rel = clk->now;
  int64_t t;

  if (reason)
    *reason = NULL;
  if (!ratelimit_active(lim))
    return rel;
  /* A notification charged for a later time (a pending summary) holds
   * everything back until then, cooldown or not. */
  if (st->last_sent > 0) {
    t = st->last_sent + lim->cooldown_ms;
    if (t > rel) {
      rel = t;
      if (reason)
        *reason = "cooldown";
    }
  }
  if (lim->rate_n > 0 && lim->rate_per_ms > 0 && lim->burst > 0) {
    t = rl_bucket_release(st, lim, clk->now);
    if (t > rel) {
      rel = t;
      if (reason)
        *reason = "rate";
    }
  }
  if (lim->daily_cap > 0 && st->day == clk->day &&
      st->day_count >= lim->daily_cap && clk->next_day > rel) {
    rel = clk->next_day;
    if (reason)
      *reason = "daily_cap";
  }
  return rel;
}

void
ratelimit_charge(struct rl_state *st, const struct rl_limits *lim,
                 const struct rl_clock *clk, int64_t at)
{
  int64_t day = at >= clk->next_day ? clk->day + 1 : clk->day;

  if (lim->rate_n > 0 && lim->rate_per_ms > 0 && lim->burst > 0) {
    int64_t t = rl_max(at, st->tokens_at);

    st->tokens = rl_fill(st, lim, t) - RL_ONE;
    st->tokens_at = t;
  }
  st->last_sent = rl_max(st->last_sent, at);
  if (day > st->day) {
    st->day = day;
    st->day_count = 0;
  }
  if (day == st->day)
    st->day_count++;
}

static void
rl_send(struct rl_state *st, const struct rl_limits *lim,
        const struct rl_clock *clk, struct rl_decision *out)
{
  out->verdict = RL_SEND;
  out->folded = st->held;
  out->folded_since = st->held ? st->held_since : 0;
  out->charge_at = clk->now;
  /* A storm is reported once: only a notification with nothing held
   * before it (a quiet period) ends it. */
  if (st->held == 0)
    st->warned = 0;
  st->held = 0;
  st->held_since = 0;
  st->sum_count = 0;
  st->sum_since = 0;
  st->sum_at = 0;
  st->sum_id = 0;
  ratelimit_charge(st, lim, clk, clk->now);
}

/* Held, with summaries: join the pending one, or start the next. */
static void
rl_summarize(struct rl_state *st, const struct rl_limits *lim,
             const struct rl_clock *clk, int64_t id, int64_t release,
             struct rl_decision *out)
{
  out->verdict = RL_SUMMARY;
  if (st->sum_id != 0 && st->sum_at > clk->now + RL_JOIN_MS) {
    out->demoted = st->sum_id;
    st->sum_count++;
  } else {
    st->sum_count = 1 + st->held;
    st->sum_since = st->held ? st->held_since : clk->now;
    st->sum_at = release;
    st->held = 0;
    st->held_since = 0;
    out->charge_at = release;
    ratelimit_charge(st, lim, clk, release);
  }
  st->sum_id = id;
  out->due = st->sum_at;
  out->folded = st->sum_count - 1;
  out->folded_since = out->folded ? st->sum_since : 0;
}

void
ratelimit_decide(struct rl_state *st, const struct rl_limits *lim,
                 int64_t cam_release, const struct rl_clock *clk,
                 int64_t id, struct rl_decision *out)
{
  const char *reason = NULL;
  int64_t rel = ratelimit_release(st, lim, clk, &reason);

  memset(out, 0, sizeof(*out));
  if (cam_release > rel && cam_release > clk->now) {
    rel = cam_release;
    reason = "camera";
  }
  if (rel <= clk->now) {
    rl_send(st, lim, clk, out);
    return;
  }
  out->reason = reason ? reason : "cooldown";
  out->first_hold = !st->warned;
  st->warned = 1;
  if (lim->summary) {
    rl_summarize(st, lim, clk, id, rel, out);
    return;
  }
  out->verdict = RL_HOLD;
  if (st->held++ == 0)
    st->held_since = clk->now;
}
