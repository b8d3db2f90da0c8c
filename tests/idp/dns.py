"""An authoritative DNS server for the domain-verification tests: answers TXT queries from a JSON
file ({"name.": ["value", …]}) re-read at every query, so a test can publish and remove records;
unknown names get NXDOMAIN.

usage: dns.py PORT RECORDS_JSON
"""
import json
import sys
import time

from dnslib import QTYPE, RCODE, RR, TXT
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class FileResolver(BaseResolver):
    def __init__(self, path):
        self.path = path

    def resolve(self, request, handler):
        reply = request.reply()
        q = request.q
        name = str(q.qname).lower()
        try:
            with open(self.path) as f:
                records = {k.lower(): v for k, v in json.load(f).items()}
        except (FileNotFoundError, json.JSONDecodeError):
            records = {}
        if name not in records:
            reply.header.rcode = RCODE.NXDOMAIN
        elif q.qtype in (QTYPE.TXT, QTYPE.ANY):
            for v in records[name]:
                reply.add_answer(RR(q.qname, QTYPE.TXT, rdata=TXT(v), ttl=0))
        reply.header.aa = 1
        return reply


port, path = int(sys.argv[1]), sys.argv[2]
servers = [
    DNSServer(FileResolver(path), port=port, address="127.0.0.1", tcp=tcp,
              logger=DNSLogger("-request,-reply,-truncated,-recv,-send,-data"))
    for tcp in (False, True)
]
for s in servers:
    s.start_thread()
print("ready", flush=True)
while all(s.isAlive() for s in servers):
    time.sleep(0.5)
