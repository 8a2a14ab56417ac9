/* ratelimit.h - how often a camera may notify a person.
 *
 * Three limits, each optional: a cooldown (at most one notification per
 * N seconds), a token bucket (rate tokens per period, at most burst
 * saved up) and a daily cap (per local day, in the configured zone). A
 * key is a camera and a backend, and also a camera alone for the
 * camera-wide limit (counted once per event, over all its notification
 * backends). MQTT is never limited: Home Assistant needs every state.
 *
 * What a limit holds back is not lost. It is folded into the next
 * notification that goes out ("+4 more motion events since 14:02"), or,
 * with `summary`, the latest held event becomes a summary delivery due
 * when the limits allow one again: held events that follow join it
 * until it is due, and its time is charged to the limits at once, so a
 * storm yields one notification per quiet period, each summing up.
 *
 * This is pure logic over plain structs and an explicit clock: no I/O,
 * no wall clock. The spool writer (gateway/spool.c) runs it in the same
 * transaction that stores the event, and keeps each key's state in the
 * spool, so decisions are ordered like the events and a restart during
 * a storm does not release a burst. */
#ifndef CAMGATE_RATELIMIT_H
#define CAMGATE_RATELIMIT_H

#include <glib.h>
#include <stdint.h>

/* Bucket fills count in millionths of a token. */
#define RL_ONE 1000000LL
/* A pending summary due sooner than this takes no more events (it may
 * already be on its way); they start the next one. */
#define RL_JOIN_MS 2000

struct rl_limits {
  int64_t cooldown_ms;      /* 0: none */
  int rate_n;               /* rate_n tokens per rate_per_ms; 0: none */
  int64_t rate_per_ms;
  int burst;                /* the bucket's size, >= 1 with a rate */
  int daily_cap;            /* 0: none */
  int summary;              /* held back: summary (1) or fold (0) */
};

/* What is remembered per key. All zero is a key never seen. */
struct rl_state {
  int64_t last_sent;        /* ms of the latest notification (may be a
                             * summary's future time); 0: never */
  int64_t tokens;           /* bucket fill in RL_ONE units */
  int64_t tokens_at;        /* ms the fill is for; 0: a full bucket */
  int64_t day;              /* local day (days since the epoch) */
  int day_count;            /* notifications on that day */
  int held;                 /* held back for the next notification */
  int64_t held_since;       /* ms of the first of them */
  int sum_count;            /* events the pending summary stands for */
  int64_t sum_since;        /* ms of the first of them */
  int64_t sum_at;           /* when it is due; 0: none */
  int64_t sum_id;           /* its delivery id */
  int warned;               /* this hold was logged */
};

/* The clock the limiter decides by; a test can make one up. */
struct rl_clock {
  int64_t now;              /* ms since the epoch */
  int64_t day;              /* local day of now (days since the epoch) */
  int64_t next_day;         /* ms when the next local day begins */
};

enum rl_verdict {
  RL_SEND,                  /* goes out now */
  RL_HOLD,                  /* held back, folded into the next one */
  RL_SUMMARY                /* held back; it is the summary, due later */
};

struct rl_decision {
  enum rl_verdict verdict;
  int folded;               /* SEND, SUMMARY: held events it carries */
  int64_t folded_since;     /* ms of the first of them */
  int64_t due;              /* SUMMARY: when it goes out */
  int64_t demoted;          /* SUMMARY: the delivery that was the summary
                             * until now and is only held now; 0: none */
  int64_t charge_at;        /* ms to charge the camera-wide limit at
                             * (now, or a new summary's time); 0: none */
  int first_hold;           /* HOLD, SUMMARY: the first of a storm,
                             * which a notification with nothing folded
                             * ends (worth one log line) */
  const char *reason;       /* HOLD, SUMMARY: "cooldown", "rate",
                             * "daily_cap" or "camera" */
};

/* Fills c for now (ms) in tz (NULL: UTC). */
void ratelimit_clock(struct rl_clock *c, GTimeZone *tz, int64_t now);

/* Returns 1 when lim limits anything. */
int ratelimit_active(const struct rl_limits *lim);

/* The earliest ms at which st allows a notification under lim; at most
 * clk->now means now. *reason (may be NULL) names the binding limit. */
int64_t ratelimit_release(const struct rl_state *st,
                          const struct rl_limits *lim,
                          const struct rl_clock *clk, const char **reason);

/* Counts a notification at ms at (now or later) against st. */
void ratelimit_charge(struct rl_state *st, const struct rl_limits *lim,
                      const struct rl_clock *clk, int64_t at);

/* Decides for delivery id of an event at clk->now under the key's st and
 * lim, and cam_release, the camera-wide limit's release time (0: none),
 * and updates st. The caller charges the camera-wide state at
 * out->charge_at when it is not 0. */
void ratelimit_decide(struct rl_state *st, const struct rl_limits *lim,
                      int64_t cam_release, const struct rl_clock *clk,
                      int64_t id, struct rl_decision *out);

#endif
