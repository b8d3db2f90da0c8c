"""Plays the browser at the test SAML IdP (npm saml-idp): opens the AuthnRequest URL Atrium
redirected to, signs in with the given attributes, and prints, as JSON, what the IdP's
auto-submitting page would post to Atrium's ACS: {"acs", "SAMLResponse", "RelayState"}.
With SSO_URL "idp-initiated:http://idp", the IdP starts the sign-in itself (no AuthnRequest).

usage: saml_login.py SSO_URL 'JSON attributes (userName is the NameID)'
"""
import html
import json
import re
import sys
import urllib.parse

import httpx


def posted(page):
    """What the IdP's auto-submitting page posts, or exit with the page."""
    action = re.search(r"<form[^>]*action=[\"']([^\"']+)[\"']", page.text)
    fields = dict(
        (n, html.unescape(v))
        for n, v in re.findall(r"name=[\"'](SAMLResponse|RelayState)[\"'][^>]*value=[\"']([^\"']*)[\"']", page.text)
    )
    if not action or "SAMLResponse" not in fields:
        sys.exit(f"no SAML response page: {page.status_code} {page.text[:800]}")
    return {"acs": html.unescape(action.group(1)), **fields}


url, attributes = sys.argv[1], json.loads(sys.argv[2])
with httpx.Client(follow_redirects=True, timeout=10) as c:
    if url.startswith("idp-initiated:"):
        base = url[len("idp-initiated:"):]
        print(json.dumps(posted(c.post(urllib.parse.urljoin(base, "/signin"), data=attributes))))
        sys.exit(0)
    r = c.get(url)
    m = re.search(r"name=[\"']_authnRequest[\"'][^>]*value=[\"']([^\"']*)[\"']", r.text) or \
        re.search(r"value=[\"']([^\"']*)[\"'][^>]*name=[\"']_authnRequest[\"']", r.text)
    if not m:
        sys.exit(f"no _authnRequest on the IdP's page: {r.status_code} {r.text[:500]}")
    data = {"_authnRequest": html.unescape(m.group(1)), **attributes}
    print(json.dumps(posted(c.post(urllib.parse.urljoin(url, "/signin"), data=data))))
