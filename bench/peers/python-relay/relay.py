#!/usr/bin/python3
"""The Python relay people write instead of camgate (bench peer).

aiosmtpd takes the camera's mail with AUTH LOGIN/PLAIN and a password check,
the email module parses it, and every mail becomes one MQTT notification on
the same local broker camgate publishes to: a JSON event on
<prefix>/<user>/event and the first image on <prefix>/<user>/snapshot
(paho-mqtt). The 250 is sent once the publishes are handed to the MQTT
client; nothing is stored.

Debian's python3-aiosmtpd and python3-paho-mqtt; run with /usr/bin/python3.
usage: relay.py SMTP_PORT MQTT_PORT [USER_PREFIX] [PASSWORD] [TOPIC]
"""

import asyncio
import datetime
import email
import email.policy
import json
import signal
import sys

import paho.mqtt.client as paho
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Relay:
  def __init__(self, mqttc, prefix):
    self.mqttc = mqttc
    self.prefix = prefix

  async def handle_DATA(self, server, session, envelope):
    msg = email.message_from_bytes(envelope.content,
                                   policy=email.policy.default)
    user = session.auth_data.login.decode() if session.auth_data else "anon"
    text_part = msg.get_body(preferencelist=("plain", "html"))
    image = None
    for part in msg.iter_attachments():
      if part.get_content_maintype() == "image":
        image = part.get_content()
        break
    event = {
        "camera": user,
        "title": str(msg.get("subject", "")),
        "text": text_part.get_content() if text_part else "",
        "recv_time": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(),
        "snapshot_size": len(image) if image else 0,
    }
    self.mqttc.publish("%s/%s/event" % (self.prefix, user),
                       json.dumps(event), qos=1)
    if image:
      self.mqttc.publish("%s/%s/snapshot" % (self.prefix, user), image,
                         qos=1, retain=True)
    return "250 Message accepted"


def main():
  smtp_port, mqtt_port = int(sys.argv[1]), int(sys.argv[2])
  user_prefix = sys.argv[3] if len(sys.argv) > 3 else "bench"
  password = (sys.argv[4] if len(sys.argv) > 4 else "bench-pass").encode()
  prefix = sys.argv[5] if len(sys.argv) > 5 else "bench"

  def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login.decode().startswith(user_prefix)
          and auth_data.password == password)
    return AuthResult(success=ok)

  mqttc = paho.Client(client_id="python-relay-%d" % id(main))
  mqttc.max_queued_messages_set(0)
  mqttc.max_inflight_messages_set(1000)
  mqttc.connect("127.0.0.1", mqtt_port)
  mqttc.loop_start()
  handler = Relay(mqttc, prefix)
  loop = asyncio.new_event_loop()
  asyncio.set_event_loop(loop)

  def factory():
    return SMTP(handler, hostname="python-relay.example",
                authenticator=authenticator, auth_required=True,
                auth_require_tls=False, data_size_limit=64 * 1024 * 1024,
                loop=loop)

  server = loop.run_until_complete(
      loop.create_server(factory, host="127.0.0.1", port=smtp_port))
  loop.add_signal_handler(signal.SIGTERM, loop.stop)
  sys.stderr.write("python-relay listening on 127.0.0.1:%d\n" % smtp_port)
  try:
    loop.run_forever()
  finally:
    server.close()
    mqttc.loop_stop()
    mqttc.disconnect()


if __name__ == "__main__":
  main()
