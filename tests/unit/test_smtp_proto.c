/* Unit tests of SMTP parsing: verbs, paths, parameters, base64, PLAIN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/smtp_proto.h"

static void
test_verbs(void **state)
{
  const char *arg;

  (void)state;
  assert_int_equal(smtp_proto_verb("EHLO cam", &arg), SMTP_CMD_EHLO);
  assert_string_equal(arg, "cam");
  assert_int_equal(smtp_proto_verb("ehlo   cam", &arg), SMTP_CMD_EHLO);
  assert_string_equal(arg, "cam");
  assert_int_equal(smtp_proto_verb("helo localhost", &arg), SMTP_CMD_HELO);
  assert_int_equal(smtp_proto_verb("QUIT", &arg), SMTP_CMD_QUIT);
  assert_string_equal(arg, "");
  assert_int_equal(smtp_proto_verb("StartTLS", &arg), SMTP_CMD_STARTTLS);
  assert_int_equal(smtp_proto_verb("AUTH LOGIN x", &arg), SMTP_CMD_AUTH);
  assert_string_equal(arg, "LOGIN x");
  assert_int_equal(smtp_proto_verb("QUITX", &arg), SMTP_CMD_UNKNOWN);
  assert_int_equal(smtp_proto_verb("", &arg), SMTP_CMD_UNKNOWN);
  assert_int_equal(smtp_proto_verb("\x16\x03\x01", &arg), SMTP_CMD_UNKNOWN);
}

static void
test_paths(void **state)
{
  char addr[64];
  const char *params;

  (void)state;
  assert_int_equal(smtp_proto_path("FROM:<cam@example.com>", "FROM:", addr,
                                   sizeof(addr), &params), 0);
  assert_string_equal(addr, "cam@example.com");
  assert_string_equal(params, "");
  assert_int_equal(smtp_proto_path("from: <a@b> SIZE=100 BODY=8BITMIME",
                                   "FROM:", addr, sizeof(addr), &params),
                   0);
  assert_string_equal(addr, "a@b");
  assert_string_equal(params, "SIZE=100 BODY=8BITMIME");
  assert_int_equal(smtp_proto_path("FROM:<>", "FROM:", addr, sizeof(addr),
                                   &params), 0);
  assert_string_equal(addr, "");
  /* Cameras that forget the brackets. */
  assert_int_equal(smtp_proto_path("TO:garden@example.net", "TO:", addr,
                                   sizeof(addr), &params), 0);
  assert_string_equal(addr, "garden@example.net");
  assert_int_equal(smtp_proto_path("FROM:<a@b", "FROM:", addr, sizeof(addr),
                                   &params), -1);
  assert_int_equal(smtp_proto_path("FROM:<a@b>x", "FROM:", addr,
                                   sizeof(addr), &params), -1);
  assert_int_equal(smtp_proto_path("TO:<a b@c>", "TO:", addr, sizeof(addr),
                                   &params), -1);
  assert_int_equal(smtp_proto_path("FROM <a@b>", "FROM:", addr,
                                   sizeof(addr), &params), -1);
  assert_int_equal(smtp_proto_path("FROM:", "FROM:", addr, sizeof(addr),
                                   &params), -1);
  /* Too long for the buffer. */
  assert_int_equal(smtp_proto_path("FROM:<0123456789012345678901234567890"
                                   "12345678901234567890123456789012345>",
                                   "FROM:", addr, sizeof(addr), &params),
                   -1);
}

static void
test_params(void **state)
{
  char val[16];

  (void)state;
  assert_int_equal(smtp_proto_param("SIZE=1234 BODY=8BITMIME", "SIZE", val,
                                    sizeof(val)), 1);
  assert_string_equal(val, "1234");
  assert_int_equal(smtp_proto_param("BODY=8BITMIME size=99", "SIZE", val,
                                    sizeof(val)), 1);
  assert_string_equal(val, "99");
  assert_int_equal(smtp_proto_param("SIZEX=1", "SIZE", val, sizeof(val)),
                   0);
  assert_int_equal(smtp_proto_param("", "SIZE", val, sizeof(val)), 0);
  assert_int_equal(smtp_proto_param("SMTPUTF8", "SMTPUTF8", val,
                                    sizeof(val)), 1);
  assert_string_equal(val, "");
}

static void
test_base64(void **state)
{
  char out[64];
  char enc[64];

  (void)state;
  /* The AUTH LOGIN challenges cameras compare byte for byte. */
  assert_int_equal(smtp_proto_b64encode((const unsigned char *)"Username:",
                                        9, enc, sizeof(enc)), 12);
  assert_string_equal(enc, "VXNlcm5hbWU6");
  smtp_proto_b64encode((const unsigned char *)"Password:", 9, enc,
                       sizeof(enc));
  assert_string_equal(enc, "UGFzc3dvcmQ6");
  assert_int_equal(smtp_proto_b64decode("Y2FtLXNoZWQ=", 12, out,
                                        sizeof(out)), 8);
  assert_string_equal(out, "cam-shed");
  assert_int_equal(smtp_proto_b64decode("ZDAwci1wYXNz", 12, out,
                                        sizeof(out)), 9);
  assert_string_equal(out, "d00r-pass");
  assert_int_equal(smtp_proto_b64decode("", 0, out, sizeof(out)), 0);
  assert_int_equal(smtp_proto_b64decode("Y2Ft", 4, out, sizeof(out)), 3);
  assert_int_equal(smtp_proto_b64decode("Y2F", 3, out, sizeof(out)), -1);
  assert_int_equal(smtp_proto_b64decode("Y2F!", 4, out, sizeof(out)), -1);
  assert_int_equal(smtp_proto_b64decode("Y=Ft", 4, out, sizeof(out)), -1);
  assert_int_equal(smtp_proto_b64decode("Y2==Y2Ft", 8, out, sizeof(out)),
                   -1);
  assert_int_equal(smtp_proto_b64decode("Y2Ft", 4, out, 3), -1);
  assert_int_equal(smtp_proto_b64encode((const unsigned char *)"ab", 2,
                                        enc, 4), -1);
}

static void
test_auth_plain(void **state)
{
  char buf[64];
  const char *user;
  const char *pass;
  long n;

  (void)state;
  n = smtp_proto_b64decode("AHRyYWlsY2FtAHRyYWlsLXBhc3M=", 28, buf,
                           sizeof(buf));
  assert_true(n > 0);
  assert_int_equal(smtp_proto_auth_plain(buf, (size_t)n, &user, &pass), 0);
  assert_string_equal(user, "trailcam");
  assert_string_equal(pass, "trail-pass");
  assert_int_equal(smtp_proto_auth_plain("u\0u\0p", 5, &user, &pass), 0);
  assert_string_equal(pass, "p");
  assert_int_equal(smtp_proto_auth_plain("x\0u\0p", 5, &user, &pass), -1);
  assert_int_equal(smtp_proto_auth_plain("\0\0p", 3, &user, &pass), -1);
  assert_int_equal(smtp_proto_auth_plain("\0u", 2, &user, &pass), -1);
  assert_int_equal(smtp_proto_auth_plain("\0u\0p\0q", 6, &user, &pass), -1);
}

int
main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_verbs),  cmocka_unit_test(test_paths),
    cmocka_unit_test(test_params), cmocka_unit_test(test_base64),
    cmocka_unit_test(test_auth_plain),
  };

  return cmocka_run_group_tests(tests, NULL, NULL);
}
