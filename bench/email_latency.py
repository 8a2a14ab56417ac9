#!/usr/bin/python3
"""Latency from a camera's end of DATA to the onward SMTP server's 250,
for camgate's e-mail backend on this machine.

Starts a fake OAuth token server and an XOAUTH2 SMTP server with STARTTLS
(tests/integration/email_peers.py, aiosmtpd) and camgate (build/camgate
unless CAMGATE_BIN says otherwise) on free loopback ports, then sends N
alerts one after another (fixture 05: three JPEG snapshots), each in its
own camera session with AUTH LOGIN. For each alert: t0 just before the
camera sends its message and final "." (smtplib's data()), t1 when the
onward server answers 250 to camgate's data. Both clocks are this
process's monotonic clock.

Prints the median, p90 and worst of t1 - t0, and of t0 -> camgate's 250
to the camera.

Usage: bench/email_latency.py [N] [transport]
       (defaults 100 and smtp_xoauth2; or smtp for a password)
"""

import os
import smtplib
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
os.environ.setdefault("CAMGATE_BIN", os.path.join(HERE, "..", "build",
                                                  "camgate"))
os.environ.setdefault("CAMGATE_FIXTURES",
                      os.path.join(HERE, "..", "tests", "fixtures"))

import camgate_testlib as lib  # noqa: E402
import email_peers as peers  # noqa: E402

FROM = "alerts@contoso.example"
PASSWORD = "app-password-123"


def pct(values, p):
  s = sorted(values)
  return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def config(tmp, smtp_port, peer, fake, cert, transport):
  b = {"name": "mail", "type": "email", "transport": transport,
       "host": lib.HOST, "port": peer.port, "tls": "starttls",
       "ca_file": cert, "from": FROM, "to": ["owner@example.net"],
       "retry_initial": "1s", "retry_max": "2s"}
  if transport == "smtp":
    b["password"] = PASSWORD
  else:
    b["oauth"] = {"client_id": "bench",
                  "token_url": fake.url("/t/oauth2/v2.0/token"),
                  "token_file": os.path.join(tmp, "mail.token")}
  return {"log": {"level": "warn"},
          "spool": {"path": os.path.join(tmp, "var")},
          "smtp": {"listen": "%s:%d" % (lib.HOST, smtp_port),
                   "max_size": "4M"},
          "cameras": [lib.camera("cam-shed")], "backends": [b],
          "rules": [{"name": "all", "backends": ["mail"]}]}


def send_one(port, data):
  c = smtplib.SMTP(lib.HOST, port, timeout=30)
  try:
    c.ehlo("cam.example.com")
    c.login("cam-shed", lib.PASSWORDS["cam-shed"])
    c.mail("cam-shed@cameras.example")
    c.rcpt("x@example.net")
    t0 = time.monotonic()
    code, _ = c.data(data)
    t_ack = time.monotonic()
    if code != 250:
      raise RuntimeError("camgate answered %d" % code)
    return t0, t_ack
  finally:
    c.quit()


def main():
  n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
  transport = sys.argv[2] if len(sys.argv) > 2 else "smtp_xoauth2"
  tmp = lib.make_tmpdir("bench-email")
  cert, key = peers.make_ip_cert(tmp)
  fake = peers.FakeOAuth().start()
  peer = peers.SmtpPeer(cert, key, users={FROM: PASSWORD},
                        oauth=fake).start()
  gw = None
  try:
    fake.write_token_file(os.path.join(tmp, "mail.token"), "bench")
    smtp_port = lib.free_port()
    gw = lib.Camgate(tmp, config(tmp, smtp_port, peer, fake, cert,
                                 transport)).start()
    data = lib.read_fixture("05_hikvision_nvr_motion_3jpeg.eml")
    onward, acks = [], []
    for i in range(n):
      t0, t_ack = send_one(smtp_port, data)
      got = peer.wait_messages(i + 1, 30)
      if len(got) < i + 1:
        raise RuntimeError("alert %d not delivered:\n%s"
                           % (i, lib.tail(gw.log())))
      onward.append(got[i]["time"] - t0)
      acks.append(t_ack - t0)
    ms = lambda v: "%.1f ms" % (v * 1000)  # noqa: E731
    print("transport=%s alerts=%d" % (transport, n))
    print("end of DATA -> onward 250: median %s  p90 %s  worst %s"
          % (ms(pct(onward, 50)), ms(pct(onward, 90)), ms(max(onward))))
    print("end of DATA -> camera's 250: median %s  p90 %s  worst %s"
          % (ms(pct(acks, 50)), ms(pct(acks, 90)), ms(max(acks))))
  finally:
    if gw is not None:
      gw.stop()
    peer.stop()
    fake.stop()
    lib.remove_tmpdir(tmp)


if __name__ == "__main__":
  main()
