"""Plays the browser at the test OpenID provider: follows the authorization URL, signs in at the
dev login form as LOGIN, and prints the URL the provider sends the browser back to (Atrium's
callback with code, state and iss) without following it.

usage: oidc_login.py AUTHORIZE_URL LOGIN CALLBACK_PREFIX
"""
import re
import sys
import urllib.parse

import httpx

url, login, callback = sys.argv[1], sys.argv[2], sys.argv[3]
with httpx.Client(follow_redirects=False, timeout=10) as c:
    for _ in range(20):
        if url.startswith(callback):
            print(url)
            sys.exit(0)
        r = c.get(url)
        if r.is_redirect:
            url = urllib.parse.urljoin(url, r.headers["location"])
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"', r.text)
        prompt = re.search(r'name="prompt" value="([^"]+)"', r.text)
        if not form or not prompt:
            sys.exit(f"unexpected page at {url}: {r.status_code} {r.text[:300]}")
        data = {"prompt": prompt.group(1)}
        if prompt.group(1) == "login":
            data.update(login=login, password="any")
        r = c.post(urllib.parse.urljoin(url, form.group(1)), data=data)
        if not r.is_redirect:
            sys.exit(f"the login form answered {r.status_code}: {r.text[:300]}")
        url = urllib.parse.urljoin(url, r.headers["location"])
    sys.exit("too many redirects")
