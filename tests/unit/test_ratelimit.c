/* test_ratelimit.c - gateway/ratelimit.c under a simulated clock:
 * cooldown, token bucket, daily cap in a time zone, folding, summaries,
 * the camera-wide limit, independence of keys, a flood, and a state that
 * is copied away and back (what the spool does across a restart). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "gateway/ratelimit.h"

#define SEC_MS 1000LL
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)

/* 2026-12-03T12:00:00Z, a Thursday. */
#define T0 1796299200000LL

struct sim {
  struct rl_state st;
  struct rl_limits lim;
  GTimeZone *tz;
  int64_t next_id;
};

static void
sim_init(struct sim *s, GTimeZone *tz)
{
  memset(s, 0, sizeof(*s));
  s->tz = tz;
  s->next_id = 1;
}

/* Decides for an event at t; returns the verdict, decision in *d. */
static enum rl_verdict
sim_event(struct sim *s, int64_t t, struct rl_decision *d)
{
  struct rl_clock clk;

  ratelimit_clock(&clk, s->tz, t);
  ratelimit_decide(&s->st, &s->lim, 0, &clk, s->next_id++, d);
  return d->verdict;
}

static void
test_no_limits(void **state)
{
  struct rl_decision d;
  struct sim s;

  (void)state;
  sim_init(&s, NULL);
  assert_false(ratelimit_active(&s.lim));
  for (int i = 0; i < 50; i++) {
    assert_int_equal(sim_event(&s, T0 + i, &d), RL_SEND);
    assert_int_equal(d.folded, 0);
  }
}

static void
test_cooldown_folds(void **state)
{
  struct rl_decision d;
  struct sim s;

  (void)state;
  sim_init(&s, NULL);
  s.lim.cooldown_ms = 5 * MIN_MS;
  assert_int_equal(sim_event(&s, T0, &d), RL_SEND);
  assert_int_equal(d.charge_at, T0);
  assert_int_equal(sim_event(&s, T0 + 10 * SEC_MS, &d), RL_HOLD);
  assert_string_equal(d.reason, "cooldown");
  assert_int_equal(d.first_hold, 1);
  assert_int_equal(d.charge_at, 0);
  assert_int_equal(sim_event(&s, T0 + 2 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(d.first_hold, 0);
  assert_int_equal(sim_event(&s, T0 + 5 * MIN_MS - 1, &d), RL_HOLD);
  /* The cooldown runs from the last notification, not the last event. */
  assert_int_equal(sim_event(&s, T0 + 5 * MIN_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 3);
  assert_int_equal(d.folded_since, T0 + 10 * SEC_MS);
  /* Still the same storm: it was reported once. */
  assert_int_equal(sim_event(&s, T0 + 6 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(d.first_hold, 0);
  assert_int_equal(sim_event(&s, T0 + 11 * MIN_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 1);
  assert_int_equal(d.folded_since, T0 + 6 * MIN_MS);
  /* A quiet period ends it; the next hold starts a new one. */
  assert_int_equal(sim_event(&s, T0 + 20 * MIN_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 0);
  assert_int_equal(sim_event(&s, T0 + 21 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(d.first_hold, 1);
}

static void
test_bucket(void **state)
{
  struct rl_decision d;
  struct sim s;
  int sent = 0;

  (void)state;
  sim_init(&s, NULL);
  s.lim.rate_n = 10;
  s.lim.rate_per_ms = HOUR_MS;
  s.lim.burst = 3;
  /* A full bucket lets the burst through at once. */
  for (int i = 0; i < 3; i++)
    assert_int_equal(sim_event(&s, T0 + i * SEC_MS, &d), RL_SEND);
  assert_int_equal(sim_event(&s, T0 + 3 * SEC_MS, &d), RL_HOLD);
  assert_string_equal(d.reason, "rate");
  /* One token drips in every 6 minutes. */
  assert_int_equal(sim_event(&s, T0 + 5 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(sim_event(&s, T0 + 6 * MIN_MS + 3 * SEC_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 2);
  assert_int_equal(d.folded_since, T0 + 3 * SEC_MS);
  assert_int_equal(sim_event(&s, T0 + 7 * MIN_MS, &d), RL_HOLD);
  /* An hour of quiet refills the bucket, but not past the burst. */
  for (int i = 0; i < 10; i++)
    if (sim_event(&s, T0 + 2 * HOUR_MS + i * SEC_MS, &d) == RL_SEND)
      sent++;
  assert_int_equal(sent, 3);
}

static void
test_bucket_release_time(void **state)
{
  struct rl_clock clk;
  struct rl_decision d;
  struct sim s;
  int64_t rel;

  (void)state;
  sim_init(&s, NULL);
  s.lim.rate_n = 7;
  s.lim.rate_per_ms = HOUR_MS;
  s.lim.burst = 1;
  assert_int_equal(sim_event(&s, T0, &d), RL_SEND);
  ratelimit_clock(&clk, NULL, T0 + SEC_MS);
  rel = ratelimit_release(&s.st, &s.lim, &clk, NULL);
  /* 1/7 h = 514285.7 ms; the release rounds up, and a token is whole
   * then. */
  assert_true(rel >= T0 + 514286 && rel <= T0 + 514290);
  assert_int_equal(sim_event(&s, rel - 2, &d), RL_HOLD);
  assert_int_equal(sim_event(&s, rel, &d), RL_SEND);
}

static void
test_daily_cap_local_day(void **state)
{
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");
  struct rl_decision d;
  struct rl_clock clk;
  struct sim s;
  /* 2026-12-03 22:30 UTC is 23:30 in Berlin; the day ends 23:00 UTC. */
  int64_t t = T0 + 10 * HOUR_MS + 30 * MIN_MS;

  (void)state;
  assert_non_null(berlin);
  sim_init(&s, berlin);
  s.lim.daily_cap = 2;
  ratelimit_clock(&clk, berlin, t);
  assert_int_equal(clk.next_day, T0 + 11 * HOUR_MS);
  assert_int_equal(sim_event(&s, t - 10 * HOUR_MS, &d), RL_SEND);
  assert_int_equal(sim_event(&s, t, &d), RL_SEND);
  assert_int_equal(sim_event(&s, t + MIN_MS, &d), RL_HOLD);
  assert_string_equal(d.reason, "daily_cap");
  /* 23:59:59 in Berlin: still the same day, though UTC's is over... */
  assert_int_equal(sim_event(&s, T0 + 11 * HOUR_MS - SEC_MS, &d), RL_HOLD);
  /* ...and Berlin's midnight starts a new one. */
  assert_int_equal(sim_event(&s, T0 + 11 * HOUR_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 2);
  assert_int_equal(sim_event(&s, T0 + 11 * HOUR_MS + SEC_MS, &d), RL_SEND);
  assert_int_equal(sim_event(&s, T0 + 11 * HOUR_MS + 2 * SEC_MS, &d), RL_HOLD);
  g_time_zone_unref(berlin);
}

static void
test_clock_dst_days(void **state)
{
  GTimeZone *berlin = g_time_zone_new_identifier("Europe/Berlin");
  struct rl_clock a, b;
  /* 2026-03-29 is 23 hours long in Berlin, 2026-10-25 is 25. */
  GDateTime *m1 = g_date_time_new(berlin, 2026, 3, 29, 12, 0, 0);
  GDateTime *m2 = g_date_time_new(berlin, 2026, 10, 25, 12, 0, 0);

  (void)state;
  ratelimit_clock(&a, berlin, g_date_time_to_unix(m1) * 1000);
  ratelimit_clock(&b, berlin, g_date_time_to_unix(m2) * 1000);
  /* 2026-03-30 00:00 CEST is 2026-03-29 22:00 UTC. */
  assert_int_equal(a.next_day, 1774821600000LL);
  /* 2026-10-26 00:00 CET is 2026-10-25 23:00 UTC. */
  assert_int_equal(b.next_day, 1792969200000LL);
  assert_int_equal(b.day - a.day, 210);
  g_date_time_unref(m1);
  g_date_time_unref(m2);
  g_time_zone_unref(berlin);
}

static void
test_summary(void **state)
{
  struct rl_decision d;
  struct sim s;

  (void)state;
  sim_init(&s, NULL);
  s.lim.cooldown_ms = 5 * MIN_MS;
  s.lim.summary = 1;
  assert_int_equal(sim_event(&s, T0, &d), RL_SEND);
  /* The first held event becomes a summary due when the cooldown ends;
   * its time is charged right away. */
  assert_int_equal(sim_event(&s, T0 + 10 * SEC_MS, &d), RL_SUMMARY);
  assert_int_equal(d.due, T0 + 5 * MIN_MS);
  assert_int_equal(d.folded, 0);
  assert_int_equal(d.demoted, 0);
  assert_int_equal(d.charge_at, T0 + 5 * MIN_MS);
  assert_int_equal(d.first_hold, 1);
  /* Later ones take its place, carrying the count. */
  assert_int_equal(sim_event(&s, T0 + 20 * SEC_MS, &d), RL_SUMMARY);
  assert_int_equal(d.demoted, 2);
  assert_int_equal(d.due, T0 + 5 * MIN_MS);
  assert_int_equal(d.folded, 1);
  assert_int_equal(d.folded_since, T0 + 10 * SEC_MS);
  assert_int_equal(d.charge_at, 0);
  assert_int_equal(d.first_hold, 0);
  assert_int_equal(sim_event(&s, T0 + 4 * MIN_MS, &d), RL_SUMMARY);
  assert_int_equal(d.demoted, 3);
  assert_int_equal(d.folded, 2);
  /* Close to its time a summary takes no more: the next one starts,
   * due a cooldown after it. */
  assert_int_equal(sim_event(&s, T0 + 5 * MIN_MS - SEC_MS, &d), RL_SUMMARY);
  assert_int_equal(d.demoted, 0);
  assert_int_equal(d.due, T0 + 10 * MIN_MS);
  assert_int_equal(d.folded, 0);
  assert_int_equal(sim_event(&s, T0 + 6 * MIN_MS, &d), RL_SUMMARY);
  assert_int_equal(d.demoted, 5);
  assert_int_equal(d.due, T0 + 10 * MIN_MS);
  assert_int_equal(d.folded, 1);
  assert_int_equal(d.folded_since, T0 + 5 * MIN_MS - SEC_MS);
  /* Quiet after the last summary: the next event goes out at once. */
  assert_int_equal(sim_event(&s, T0 + 20 * MIN_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 0);
}

static void
test_summary_daily_cap(void **state)
{
  struct rl_decision d;
  struct rl_clock clk;
  struct sim s;

  (void)state;
  sim_init(&s, NULL);
  s.lim.daily_cap = 1;
  s.lim.summary = 1;
  ratelimit_clock(&clk, NULL, T0);
  assert_int_equal(sim_event(&s, T0, &d), RL_SEND);
  assert_int_equal(sim_event(&s, T0 + HOUR_MS, &d), RL_SUMMARY);
  assert_int_equal(d.due, clk.next_day);
  assert_int_equal(sim_event(&s, T0 + 2 * HOUR_MS, &d), RL_SUMMARY);
  assert_int_equal(d.folded, 1);
  /* The summary is the next day's one notification. */
  assert_int_equal(sim_event(&s, clk.next_day + HOUR_MS, &d), RL_SUMMARY);
  assert_int_equal(d.due, clk.next_day + 24 * HOUR_MS);
}

static void
test_keys_independent(void **state)
{
  struct rl_decision d;
  struct sim phone, mail;

  (void)state;
  sim_init(&phone, NULL);
  sim_init(&mail, NULL);
  phone.lim.cooldown_ms = HOUR_MS;
  mail.lim.cooldown_ms = 5 * MIN_MS;
  assert_int_equal(sim_event(&phone, T0, &d), RL_SEND);
  assert_int_equal(sim_event(&mail, T0, &d), RL_SEND);
  assert_int_equal(sim_event(&phone, T0 + 6 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(sim_event(&mail, T0 + 6 * MIN_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 0);
  assert_int_equal(phone.st.held, 1);
  assert_int_equal(mail.st.held, 0);
}

static void
test_camera_wide(void **state)
{
  struct rl_limits cam = {.cooldown_ms = 10 * MIN_MS};
  struct rl_state cst;
  struct rl_decision d;
  struct rl_clock clk;
  struct sim a, b;
  int64_t rel;

  (void)state;
  memset(&cst, 0, sizeof(cst));
  sim_init(&a, NULL);
  sim_init(&b, NULL);
  ratelimit_clock(&clk, NULL, T0);
  assert_int_equal(ratelimit_release(&cst, &cam, &clk, NULL), T0);
  ratelimit_decide(&a.st, &a.lim, 0, &clk, 1, &d);
  assert_int_equal(d.verdict, RL_SEND);
  ratelimit_decide(&b.st, &b.lim, 0, &clk, 2, &d);
  assert_int_equal(d.verdict, RL_SEND);
  ratelimit_charge(&cst, &cam, &clk, d.charge_at);
  /* One event later both backends are held by the camera's limit. */
  ratelimit_clock(&clk, NULL, T0 + MIN_MS);
  rel = ratelimit_release(&cst, &cam, &clk, NULL);
  assert_int_equal(rel, T0 + 10 * MIN_MS);
  ratelimit_decide(&a.st, &a.lim, rel, &clk, 3, &d);
  assert_int_equal(d.verdict, RL_HOLD);
  assert_string_equal(d.reason, "camera");
  b.lim.summary = 1;
  ratelimit_decide(&b.st, &b.lim, rel, &clk, 4, &d);
  assert_int_equal(d.verdict, RL_SUMMARY);
  assert_int_equal(d.due, T0 + 10 * MIN_MS);
  assert_int_equal(d.charge_at, T0 + 10 * MIN_MS);
  ratelimit_clock(&clk, NULL, T0 + 11 * MIN_MS);
  ratelimit_decide(&a.st, &a.lim, 0, &clk, 5, &d);
  assert_int_equal(d.verdict, RL_SEND);
  assert_int_equal(d.folded, 1);
}

static void
test_flood(void **state)
{
  struct rl_decision d;
  struct sim s;
  int sent = 0, logged = 0, held = 0;

  (void)state;
  sim_init(&s, NULL);
  s.lim.cooldown_ms = MIN_MS;
  s.lim.rate_n = 10;
  s.lim.rate_per_ms = HOUR_MS;
  s.lim.burst = 2;
  /* 600 events a minute for ten minutes. */
  for (int i = 0; i < 6000; i++) {
    enum rl_verdict v = sim_event(&s, T0 + i * 100, &d);

    sent += v == RL_SEND;
    held += v == RL_HOLD;
    logged += d.first_hold;
  }
  /* 0:00, 1:00 from the burst, then a token each 6 minutes: whole just
   * after 6:00, so the event at 6:00.1 goes. */
  assert_int_equal(sent, 3);
  assert_int_equal(held, 5997);
  /* One storm, one log line. */
  assert_int_equal(logged, 1);
  /* Held since then: four minutes of events less 6:00.0 and 6:00.1. */
  assert_int_equal(s.st.held, 4 * 600 - 2);
}

static void
test_state_roundtrip(void **state)
{
  struct rl_state saved;
  struct rl_decision d;
  struct sim s;

  (void)state;
  sim_init(&s, NULL);
  s.lim.cooldown_ms = HOUR_MS;
  s.lim.rate_n = 3;
  s.lim.rate_per_ms = HOUR_MS;
  s.lim.burst = 3;
  s.lim.daily_cap = 5;
  assert_int_equal(sim_event(&s, T0, &d), RL_SEND);
  assert_int_equal(sim_event(&s, T0 + MIN_MS, &d), RL_HOLD);
  /* What the spool stores and reads back at the next start. */
  memcpy(&saved, &s.st, sizeof(saved));
  memset(&s.st, 0, sizeof(s.st));
  memcpy(&s.st, &saved, sizeof(saved));
  assert_int_equal(sim_event(&s, T0 + 2 * MIN_MS, &d), RL_HOLD);
  assert_int_equal(d.first_hold, 0);
  assert_int_equal(sim_event(&s, T0 + HOUR_MS, &d), RL_SEND);
  assert_int_equal(d.folded, 2);
  assert_int_equal(s.st.day_count, 2);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_no_limits),
    cmocka_unit_test(test_cooldown_folds),
    cmocka_unit_test(test_bucket),
    cmocka_unit_test(test_bucket_release_time),
    cmocka_unit_test(test_daily_cap_local_day),
    cmocka_unit_test(test_clock_dst_days),
    cmocka_unit_test(test_summary),
    cmocka_unit_test(test_summary_daily_cap),
    cmocka_unit_test(test_keys_independent),
    cmocka_unit_test(test_camera_wide),
    cmocka_unit_test(test_flood),
    cmocka_unit_test(test_state_roundtrip),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
