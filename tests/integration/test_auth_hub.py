"""Logging in to a real hub: native sign-up and login (regression for nativeauthenticator's
statsd call on JupyterHub 6), lockout, the bootstrapped admin account, password changes,
and the OAuth configuration path."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from hubproc import unique_name

pytestmark = pytest.mark.integration

PASSWORD = "Gem-pass-4821"


class Browser:
    """What a browser does with the hub's forms: cookies, the form's _xsrf, no JavaScript."""

    def __init__(self, hub):
        self.hub = hub
        self.http = httpx.Client(base_url=hub.url, timeout=30, follow_redirects=False)

    def close(self):
        self.http.close()

    def form(self, path: str, data: dict) -> httpx.Response:
        page = self.http.get(path)
        assert page.status_code == 200, page.text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, f"no _xsrf field in {path}"
        return self.http.post(path, data={**data, "_xsrf": xsrf.group(1)})

    def signup(self, username: str, password: str = PASSWORD) -> httpx.Response:
        return self.form("/hub/signup", {"username": username, "signup_password": password,
                                         "signup_password_confirmation": password})

    def login(self, username: str, password: str) -> httpx.Response:
        return self.form("/hub/login", {"username": username, "password": password})


@pytest.fixture
def browser(hub):
    b = Browser(hub)
    yield b
    b.close()


def assert_logged_in(r: httpx.Response, b: Browser):
    assert r.status_code == 302, f"login refused: {r.status_code}\n{r.text[-2000:]}"
    assert b.http.get("/hub/home").status_code == 200


def login_error(r: httpx.Response) -> str:
    m = re.search(r'<p class="login_error">\s*(.*?)\s*</p>', r.text, re.S)
    return m.group(1) if m else r.text


def test_signup_then_login(hub, browser):
    name = unique_name("su")
    r = browser.signup(name)
    assert r.status_code == 200
    assert "The signup was successful" in r.text
    assert browser.http.get("/hub/home").status_code == 302  # not logged in yet

    r = browser.login(name, PASSWORD)
    assert_logged_in(r, browser)
    assert hub.api("GET", f"/users/{name}").status_code == 200


def test_wrong_password_is_refused(hub, browser):
    name = unique_name("wp")
    browser.signup(name)
    r = browser.login(name, "not-the-password")
    assert r.status_code == 403
    assert "Invalid username or password" in login_error(r)
    assert browser.http.get("/hub/home").status_code == 302


def test_weak_password_refused_at_signup(hub, browser):
    name = unique_name("wk")
    r = browser.signup(name, "short")
    assert "at least 8 characters" in r.text
    assert browser.login(name, "short").status_code == 403


def test_admin_logs_in_with_bootstrapped_password(hub, browser):
    r = browser.login("admin", hub.admin_password)
    assert_logged_in(r, browser)
    assert browser.http.get("/hub/admin").status_code == 200
    # nobody can take the admin name by signing up
    other = Browser(hub)
    assert "already in use" in other.signup("admin").text
    other.close()


def test_admin_resets_a_password_and_user_changes_it(hub, browser):
    name = unique_name("pw")
    user = Browser(hub)
    user.signup(name)
    assert_logged_in(browser.login("admin", hub.admin_password), browser)
    reset = "Reset-pass-5511"
    r = browser.form(f"/hub/change-password/{name}",
                     {"new_password": reset, "new_password_confirmation": reset})
    assert f"The password for {name} has been changed successfully" in r.text

    assert user.login(name, PASSWORD).status_code == 403
    assert_logged_in(user.login(name, reset), user)
    mine = "Mine-pass-9034"
    r = user.form("/hub/change-password", {"old_password": reset, "new_password": mine,
                                           "new_password_confirmation": mine})
    assert "Your password has been changed successfully" in r.text
    other = Browser(hub)
    assert_logged_in(other.login(name, mine), other)
    for b in (user, other):
        b.close()


def test_signup_needs_admin_approval_when_not_open(make_hub):
    hub = make_hub({"auth": {"open_signup": False}})
    user, admin = Browser(hub), Browser(hub)
    name = unique_name("ap")
    r = user.signup(name)
    assert "Your information has been sent to the admin" in r.text
    r = user.login(name, PASSWORD)
    assert r.status_code == 403
    assert "has not been authorized by an administrator yet" in login_error(r)

    assert_logged_in(admin.login("admin", hub.admin_password), admin)
    assert name in admin.http.get("/hub/authorize").text
    assert admin.http.get(f"/hub/authorize/{name}").status_code == 302  # toggles approval
    assert user.http.get(f"/hub/authorize/{name}").status_code != 302  # not for users
    assert_logged_in(user.login(name, PASSWORD), user)
    for b in (user, admin):
        b.close()


def test_lockout_refuses_right_password_then_reopens(make_hub):
    hub = make_hub({"auth": {"lockout_seconds": 3}})
    b = Browser(hub)
    name = unique_name("lo")
    b.signup(name)
    for _ in range(5):
        assert b.login(name, "wrong-password").status_code == 403
    r = b.login(name, PASSWORD)
    assert r.status_code == 403
    assert "locked" in login_error(r)
    # after the window, the right password works again (poll: no fixed sleep)
    deadline = time.monotonic() + 30
    while True:
        r = b.login(name, PASSWORD)
        if r.status_code == 302 or time.monotonic() > deadline:
            break
        assert "locked" in login_error(r)
        time.sleep(0.5)
    assert_logged_in(r, b)
    b.close()


def test_generic_oauth_redirects_to_the_provider(make_hub):
    authorize = "https://idp.example.test/oauth2/authorize"
    hub = make_hub({"auth": {"type": "generic", "oauth": {
        "client_id": "gemhub-test-client",
        "client_secret": "s3cret",
        "callback_url": "http://127.0.0.1/hub/oauth_callback",
        "authorize_url": authorize,
        "token_url": "https://idp.example.test/oauth2/token",
        "userdata_url": "https://idp.example.test/oauth2/userinfo",
        "scope": ["openid", "profile"],
        "allow_all": True,
    }}})
    r = hub.request("GET", "/hub/oauth_login")
    assert r.status_code == 302, r.text
    location = r.headers["Location"]
    assert location.startswith(authorize + "?")
    query = parse_qs(urlparse(location).query)
    assert query["client_id"] == ["gemhub-test-client"]
    assert query["redirect_uri"] == ["http://127.0.0.1/hub/oauth_callback"]
    assert query["scope"] == ["openid profile"]
    # no native forms on an OAuth hub
    assert hub.request("GET", "/hub/signup").status_code == 404
