"""The .dialog parser, planner and replayer of camgate_testlib, checked
without the daemon: against every fixture file, synthetic dialogs, and a
small scripted SMTP server in this process."""

import base64
import os
import re
import socket
import socketserver
import ssl
import threading
import unittest

import camgate_testlib as lib

DIALOGS = sorted(f for f in os.listdir(lib.SMTP_FIXTURES)
                 if f.endswith(".dialog"))


def kinds(actions):
  return [a.kind for a in actions]


class ParseFixtures(unittest.TestCase):

  def test_every_fixture_parses_and_plans(self):
    self.assertTrue(DIALOGS, "no .dialog fixtures found")
    for name in DIALOGS:
      with self.subTest(name):
        acts = lib.load_dialog(name)
        self.assertEqual(acts[0].kind, "connect")
        self.assertIn(acts[-1].kind, ("close", "reset"))
        for a in acts:
          if a.kind == "data":
            self.assertTrue(os.path.exists(lib.fixture_path(a.arg)), a.arg)
          for e in a.expects:
            self.assertIsNotNone(e.code, "%s line %d: no code" %
                                 (name, e.lineno))

  def test_01_helo_fallback(self):
    acts = lib.load_dialog("01_ehlo_then_helo_fallback_auth_login.dialog")
    self.assertEqual(acts[0].expects[0].code, 220)
    ehlo = acts[1]
    self.assertEqual((ehlo.kind, ehlo.arg), ("cmd", "EHLO localhost"))
    # "#S: (camera observed ... after a 250 multi-line EHLO reply ...)"
    self.assertEqual(ehlo.expects[0].code, 250)
    self.assertEqual(acts[2].arg, "HELO localhost")
    auth = acts[3]
    self.assertEqual(auth.expects[0].exact, "334 VXNlcm5hbWU6")
    self.assertEqual(acts[4].expects[0].exact, "334 UGFzc3dvcmQ6")
    self.assertEqual(acts[5].expects[0].code, 235)
    self.assertEqual(kinds(acts[6:]),
                     ["cmd", "cmd", "cmd", "data", "dot", "cmd", "close"])
    self.assertEqual(acts[9].arg, "05_hikvision_nvr_motion_3jpeg.eml")
    self.assertEqual(acts[10].expects[0].code, 250)
    self.assertEqual(acts[11].expects[0].code, 221)
    # the commented-out "# C: QUIT" of the failure branch is not a step
    self.assertEqual(sum(1 for a in acts if a.arg == "QUIT"), 1)

  def test_02_multiline_group_and_535(self):
    acts = lib.load_dialog("02_auth_login_initial_response_variants.dialog")
    ehlo = acts[1]
    self.assertEqual(ehlo.expects[0].code, 250)
    self.assertEqual(len(ehlo.expects[0].text.splitlines()), 3)
    self.assertEqual(acts[2].arg, "AUTH LOGIN Y2FtLWRvb3I=")
    self.assertEqual(acts[2].expects[0].exact, "334 UGFzc3dvcmQ6")
    codes = [a.expects[0].code for a in acts if a.kind == "cmd"]
    self.assertEqual(codes, [250, 334, 235, 250, 334, 334, 235, 334, 334,
                             535, 221])

  def test_03_data_lines(self):
    acts = lib.load_dialog("03_auth_login_strict_challenge_text.dialog")
    data = [a.arg for a in acts if a.kind == "dataline"]
    self.assertEqual(data[0], "From: cam-lobby@example.com")
    self.assertIn("", data)            # "C: " is an empty line
    self.assertEqual(len(data), 6)
    dot = [a for a in acts if a.kind == "dot"]
    self.assertEqual(len(dot), 1)
    self.assertEqual(dot[0].expects[0].code, 250)

  def test_13_starttls_and_inferred_replies(self):
    acts = lib.load_dialog("13_starttls_tls10_legacy_ciphers.dialog")
    i = [a.kind for a in acts].index("tls")
    self.assertEqual(acts[i - 1].arg, "STARTTLS")
    self.assertEqual(acts[i - 1].expects[0].code, 220)
    tls = acts[i]
    self.assertFalse(tls.arg["implicit"])
    self.assertEqual(tls.expects, [])
    self.assertEqual(tls.arg["client_version"], "0x0301")
    after = acts[i + 1:]
    self.assertEqual(after[0].arg, "EHLO dafang-1")
    self.assertFalse(after[0].expects[0].inferred)
    inferred = {a.arg: a.expects[0] for a in after
                if a.kind in ("cmd", "dot") and a.expects[0].inferred}
    self.assertEqual({k: v.code for k, v in inferred.items()},
                     {"MAIL FROM:<dafang-1@example.com>": 250,
                      "RCPT TO:<alerts@example.net>": 250,
                      "DATA": 354, ".": 250, "QUIT": 221})

  def test_14_implicit_tls(self):
    acts = lib.load_dialog("14_implicit_tls_465.dialog")
    self.assertEqual(acts[0].kind, "connect")
    self.assertEqual(acts[0].arg, {"port": 465})
    self.assertEqual(acts[0].expects, [])
    self.assertEqual(acts[1].kind, "tls")
    self.assertTrue(acts[1].arg["implicit"])
    self.assertEqual(acts[1].expects[0].code, 220)
    self.assertEqual(acts[1].arg["sni"], "gateway.example.net")

  def test_07_two_rcpts(self):
    acts = lib.load_dialog("07_reolink_rcpt_identity_text_only.dialog")
    rcpts = [a.arg for a in acts if a.arg and str(a.arg).startswith("RCPT")]
    self.assertEqual(len(rcpts), 2)
    self.assertFalse(any(str(a.arg).startswith("AUTH") for a in acts))

  def test_fixture_credentials_match_library(self):
    decoded = set()
    for name in DIALOGS:
      with open(lib.fixture_path(name)) as f:
        text = f.read()
      for st in lib.parse_dialog(text):
        if st.kind != "send":
          continue
        for tok in st.arg.split():
          if re.match(r"^[A-Za-z0-9+/]{4,}=*$", tok) and len(tok) % 4 == 0:
            try:
              decoded.update(base64.b64decode(tok).decode().split("\0"))
            except (ValueError, UnicodeDecodeError):
              pass
    for user in ("cam-shed", "cam-door", "cam-lobby", "trailcam",
                 "dafang-1", "nvr-gate"):
      self.assertIn(user, decoded)
      self.assertIn(lib.PASSWORDS[user], decoded, user)


class ParseSynthetic(unittest.TestCase):

  def plan(self, text):
    return lib.plan_dialog(lib.parse_dialog(text))

  def test_same_segment_dot_quit_and_reset(self):
    acts = self.plan("#S: 220 x\nC: DATA\n#S: 354 go\nC: a\n"
                     "@same-segment . + QUIT\n#S: 250 ok\n#S: 221 bye\n"
                     "@reset\n")
    same = [a for a in acts if a.kind == "same"][0]
    self.assertEqual(same.arg, [(".", True), ("QUIT", True)])
    self.assertEqual([e.code for e in same.expects], [250, 221])
    self.assertEqual(acts[-1].kind, "reset")

  def test_same_segment_inferred_and_prefixed(self):
    acts = self.plan("@same-segment C: MAIL FROM:<a@b> + C: RCPT TO:<c@d>"
                     "\n@close\n")
    same = acts[1]
    self.assertEqual([l for l, _ in same.arg],
                     ["MAIL FROM:<a@b>", "RCPT TO:<c@d>"])
    self.assertEqual([e.code for e in same.expects], [250, 250])
    self.assertTrue(all(e.inferred for e in same.expects))

  def test_groups_split_on_final_line(self):
    steps = lib.parse_dialog("#S: 250-a\n# note\n#S: 250 b\n#S: 221 c\n")
    self.assertEqual([s.arg for s in steps], [["250-a", "250 b"],
                                              ["221 c"]])

  def test_empty_c_line(self):
    steps = lib.parse_dialog("C: \nC:\nC:  two\n")
    self.assertEqual([s.arg for s in steps], ["", "", " two"])

  def test_errors(self):
    for bad in ("@frobnicate\n", "S: 250\n", "@connect port\n",
                "@include-data\n"):
      with self.subTest(bad):
        with self.assertRaises(lib.DialogError):
          lib.parse_dialog(bad)
    with self.assertRaises(lib.DialogError):
      self.plan("C: EHLO x\n@include-data 05.eml\n")

  def test_orphan_reply_is_read(self):
    acts = self.plan("#S: 220 a\n#S: 421 bye\n")
    self.assertEqual(acts[1].kind, "read")
    self.assertEqual(acts[1].expects[0].code, 421)

  def test_expect_code_extraction(self):
    e = lib.expect_from_group(["(TLS handshake) then 220 gw ESMTP"], 1)
    self.assertEqual(e.code, 220)
    e = lib.expect_from_group(["535 5.7.8 Authentication (expected)"], 1)
    self.assertEqual((e.code, e.exact), (535, None))
    e = lib.expect_from_group(["334 VXNlcm5hbWU6   <- REQUIRED"], 1)
    self.assertEqual(e.exact, "334 VXNlcm5hbWU6")
    self.assertIsNone(lib.expect_from_group(["whatever"], 1).code)


class Helpers(unittest.TestCase):

  def test_dotstuff(self):
    self.assertEqual(lib.dotstuff(b".a\r\nb\r\n..c\r\n"),
                     b"..a\r\nb\r\n...c\r\n")
    self.assertEqual(lib.dotstuff(b"x\n.y"), b"x\n..y\r\n")
    self.assertEqual(lib.dotstuff(b"x"), b"x\r\n")

  def test_eml_jpegs(self):
    j = lib.eml_jpegs("05_hikvision_nvr_motion_3jpeg.eml")
    self.assertEqual(len(j), 3)
    for b in j:
      self.assertEqual(b[:2], b"\xff\xd8")
      self.assertEqual(b[-2:], b"\xff\xd9")
    self.assertEqual([len(b) for b in
                      lib.eml_jpegs("11_single_line_base64_over_998.eml")],
                     [18105])
    self.assertEqual(len(lib.eml_jpegs("12_zoneminder_inline_cid_related"
                                       ".eml")), 1)
    self.assertEqual(len(lib.eml_jpegs("06_dahua_ezip_base64_body.eml")), 1)
    self.assertEqual(lib.eml_jpegs("07_reolink_text_only.eml"), [])
    self.assertEqual(lib.eml_jpegs("08_no_date_no_msgid_bare_lf.eml"), [])

  def test_yaml(self):
    y = lib.to_yaml({"a": {"b": 1, "c": "2s", "d": "1.2", "e": True},
                     "l": [{"id": "x", "p": lib.NVR_CHANNEL_RE},
                           "127.0.0.1"], "z": []})
    self.assertIn("  c: 2s\n", y)
    self.assertIn('  d: "1.2"\n', y)
    self.assertIn("  e: true\n", y)
    self.assertIn("l:\n  - id: x\n    p: \"CAMERA NAME\\\\(NUM\\\\)", y)
    self.assertIn('  - "127.0.0.1"\n', y)
    self.assertIn("z: []\n", y)

  def test_clienthello_contexts(self):
    p13 = lib.load_dialog("13_starttls_tls10_legacy_ciphers.dialog")
    tls = [a for a in p13 if a.kind == "tls"][0].arg
    ctx = lib.clienthello_context(tls)
    self.assertEqual(ctx.maximum_version, ssl.TLSVersion.TLSv1)
    names = {c["name"] for c in ctx.get_ciphers()}
    self.assertTrue({"AES128-SHA", "AES256-SHA"} <= names, names)
    self.assertFalse(any("ECDHE" in n for n in names))
    self.assertIsNone(lib.clienthello_sni(tls))
    p14 = lib.load_dialog("14_implicit_tls_465.dialog")
    ctx = lib.clienthello_context(p14[1].arg)
    self.assertEqual(ctx.maximum_version, ssl.TLSVersion.TLSv1_2)
    self.assertIn("ECDHE-RSA-AES128-GCM-SHA256",
                  {c["name"] for c in ctx.get_ciphers()})


# --------------------------------------------------- a scripted server

class FakeSmtp(socketserver.ThreadingTCPServer):
  """Answers the way the fixtures expect; user_challenge can be set to
  aiosmtpd's "User Name\\0" to prove the replayer notices."""
  daemon_threads = True
  allow_reuse_address = True

  def __init__(self):
    socketserver.ThreadingTCPServer.__init__(self, (lib.HOST, 0), Handler)
    self.user_challenge = "VXNlcm5hbWU6"
    self.messages = []
    self.resets = 0


class Handler(socketserver.StreamRequestHandler):

  def out(self, s):
    self.wfile.write(s.encode() + b"\r\n")

  def handle(self):
    srv = self.server
    self.out("220 gateway.example.net ESMTP")
    try:
      while True:
        line = self.rfile.readline()
        if not line:
          return
        cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
        verb = cmd.split(" ")[0].upper()
        if verb == "EHLO":
          self.out("250-gateway.example.net")
          self.out("250-AUTH PLAIN LOGIN")
          self.out("250 HELP")
        elif verb == "AUTH" and cmd.upper().startswith("AUTH LOGIN"):
          if len(cmd.split()) == 2:
            self.out("334 " + srv.user_challenge)
            self.rfile.readline()
          self.out("334 UGFzc3dvcmQ6")
          self.rfile.readline()
          self.out("235 2.7.0 ok")
        elif verb == "AUTH":
          self.out("235 2.7.0 ok")
        elif verb == "DATA":
          self.out("354 go")
          data = b""
          while True:
            l = self.rfile.readline()
            if not l:
              return
            if l == b".\r\n":
              break
            data += l[1:] if l.startswith(b".") else l
          srv.messages.append(data)
          self.out("250 2.0.0 queued as X")
        elif verb == "QUIT":
          self.out("221 bye")
          return
        elif verb in ("HELO", "MAIL", "RCPT", "RSET", "NOOP"):
          self.out("250 ok")
        else:
          self.out("500 5.5.2 what")
    except (ConnectionResetError, BrokenPipeError):
      srv.resets += 1


class ReplayAgainstFake(unittest.TestCase):

  def setUp(self):
    self.srv = FakeSmtp()
    self.port = self.srv.server_address[1]
    self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
    self.t.start()

  def tearDown(self):
    self.srv.shutdown()
    self.srv.server_close()
    self.t.join(5)

  def replay(self, name):
    r = lib.DialogReplayer({None: self.port}, timeout=5)
    return r.run(lib.load_dialog(name))

  def test_plain_fixtures_replay(self):
    for name in ("01_ehlo_then_helo_fallback_auth_login.dialog",
                 "03_auth_login_strict_challenge_text.dialog",
                 "04_helo_then_auth_plain.dialog",
                 "07_reolink_rcpt_identity_text_only.dialog"):
      with self.subTest(name):
        self.replay(name)
    self.assertEqual(len(self.srv.messages), 4)
    self.assertEqual(self.srv.messages[0],
                     lib.read_fixture("05_hikvision_nvr_motion_3jpeg.eml"))
    self.assertEqual(self.srv.messages[2],
                     lib.read_fixture("12_zoneminder_inline_cid_related.eml"))
    self.assertTrue(self.srv.messages[1].endswith(
        b"\r\n\r\nMotion detected on channel 1 at 2024-05-01 12:30:45\r\n"))

  def test_wrong_challenge_is_caught(self):
    self.srv.user_challenge = "VXNlciBOYW1lAA=="
    with self.assertRaises(lib.DialogMismatch) as cm:
      self.replay("03_auth_login_strict_challenge_text.dialog")
    self.assertIn("VXNlcm5hbWU6", str(cm.exception))

  def test_wrong_code_is_caught(self):
    # the fake never answers 535, so variant C of fixture 02 must fail
    with self.assertRaises(lib.DialogMismatch) as cm:
      self.replay("02_auth_login_initial_response_variants.dialog")
    self.assertIn("535", str(cm.exception))

  def test_same_segment_and_reset(self):
    text = ("#S: 220 x\nC: EHLO a\n#S: 250-x\n#S: 250 y\nC: MAIL FROM:<a@b>"
            "\nC: RCPT TO:<c@d>\nC: DATA\nC: .hidden dot\nC: body\n"
            "@same-segment . + QUIT\n#S: 250 queued\n#S: 221 bye\n@reset\n")
    r = lib.DialogReplayer({None: self.port}, timeout=5)
    tr = r.run(lib.plan_dialog(lib.parse_dialog(text)))
    self.assertEqual([rep.code for _, _, rep in tr],
                     [220, 250, 250, 250, 354, 250, 221])
    self.assertEqual(self.srv.messages, [b".hidden dot\r\nbody\r\n"])

  def test_tls_failure_is_reported(self):
    # the fake speaks no TLS: the handshake must fail, not hang
    text = "#S: 220 x\nC: EHLO a\n@tls-clienthello client_version=0x0303\n"
    r = lib.DialogReplayer({None: self.port}, timeout=2)
    with self.assertRaises(lib.TlsHandshakeError):
      r.run(lib.plan_dialog(lib.parse_dialog(text)))
    r.close()


if __name__ == "__main__":
  unittest.main()
