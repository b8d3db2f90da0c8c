"""Plays the browser at the test SAML IdP (npm saml-idp): opens the AuthnRequest URL Atrium
redirected to, signs in with the given attributes, and prints, as JSON, what the IdP's
auto-submitting page would post to Atrium's ACS: {"acs", "SAMLResponse", "RelayState"}.

usage: saml_login.py SSO_URL 'JSON attributes (userName is the NameID)'
"""
import html
import json
import re
import sys
import urllib.parse

import httpx

url, attributes = sys.argv[1], json.loads(sys.argv[2])
with httpx.Client(follow_redirects=True, timeout=10) as c:
    if url.startswith("idp-initiated:"):
        # The IdP starts the sign-in itself: no AuthnRequest, so no InResponseTo.
        base = url[len("idp-initiated:"):]
        r = c.post(urllib.parse.urljoin(base, "/signin"), data=attributes)
        action = re.search(r"<form[^>]*action=[\"']([^\"']+)[\"']", r.text)
        fields = dict(
            (n, html.unescape(v))
            for n, v in re.findall(r"name=[\"'](SAMLResponse|RelayState)[\"'][^>]*value=[\"']([^\"']*)[\"']", r.text)
        )
        if not action or "SAMLResponse" not in fields:
            sys.exit(f"no SAML response page: {r.status_code} {r.text[:800]}")
        print(json.dumps({"acs": html.unescape(action.group(1)), **fields}))
        sys.exit(0)
    r = c.get(url)
    m = re.search(r"name=[\"']_authnRequest[\"'][^>]*value=[\"']([^\"']*)[\"']", r.text) or \
        re.search(r"value=[\"']([^\"']*)[\"'][^>]*name=[\"']_authnRequest[\"']", r.text)
    if not m:
        sys.exit(f"no _authnRequest on the IdP's page: {r.status_code} {r.text[:500]}")
    data = {"_authnRequest": html.unescape(m.group(1)), **attributes}
    r = c.post(urllib.parse.urljoin(url, "/signin"), data=data)
    action = re.search(r"<form[^>]*action=[\"']([^\"']+)[\"']", r.text)
    fields = dict(
        (n, html.unescape(v))
        for n, v in re.findall(r"name=[\"'](SAMLResponse|RelayState)[\"'][^>]*value=[\"']([^\"']*)[\"']", r.text)
    )
    if not action or "SAMLResponse" not in fields:
        sys.exit(f"no SAML response page: {r.status_code} {r.text[:800]}")
    print(json.dumps({"acs": html.unescape(action.group(1)), **fields}))
