"""A custom image from the browser to a terminal, as a person does it.

Create an image on the images page, write a Dockerfile in the page's editor (a refused
line is flagged while typing, a hint shown), build it, watch the log grow, pick the image
on the spawn page, and run the installed tool in a JupyterLab terminal: /etc/os-release
and pip come from the image. Screenshots go to test-artifacts/images/.
"""

from __future__ import annotations

import time

import pytest

from browser import chromium_page, signup_and_login
from hubproc import unique_name

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def wait_text(page, hub_url: str, user: str, path: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = page.request.get(f"{hub_url}/user/{user}/api/contents/{path}?content=1&type=file&format=text")
        if r.ok and r.json().get("content"):
            return r.json()["content"]
        time.sleep(0.5)
    raise TimeoutError(f"{path} never appeared")


def test_dockerfile_on_the_page_to_a_terminal(images_hub, artifacts):
    hub, _, base = images_hub
    shots = artifacts / "images"
    name, password = unique_name("ime2e"), "Gemini-Pass-2026"
    image_name = unique_name("cow")
    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, password)
        page.goto(f"{hub.url}/services/images/")
        page.wait_for_selector("#official-images tr[data-name='base']")
        page.fill("#image-name", image_name)
        page.select_option("#image-visibility", "private")
        page.click("#create-image")
        page.wait_for_selector("#dockerfile")
        assert image_name in page.locator("#image-title").inner_text()

        # the editor checks as you type: a refused line is named, then a hint
        editor = page.locator("#dockerfile")
        editor.click()
        page.keyboard.type("EXPOSE 8888\n")
        page.wait_for_selector("#check-result .problem:has-text('line 1: EXPOSE is not allowed')")
        page.screenshot(path=str(shots / "01-refused-line.png"))
        editor.fill("")
        editor.click()
        page.keyboard.type("RUN pip install cowsay\n")
        page.wait_for_selector("#check-result .hint:has-text('--no-cache-dir')")
        editor.fill("")
        editor.click()
        page.keyboard.type("RUN pip install --no-cache-dir cowsay\nENV COW_SAYS=moo\n")
        page.wait_for_selector("#check-result li:has-text('ok')")
        assert page.locator("#gutter").inner_text().split() == ["1", "2", "3"]
        page.select_option("#base", label=f"base:v{base['latest_version']} (official)")
        page.click("#build-button")

        # the log streams in while it builds, and the version ends "succeeded"
        page.wait_for_selector("#log-panel:not([hidden])")
        page.wait_for_function("() => document.querySelector('#build-log').textContent.includes('STEP')",
                               timeout=300_000)
        page.screenshot(path=str(shots / "02-building.png"))
        page.wait_for_selector("tr[data-version='1'][data-state='succeeded']", timeout=600_000)
        page.wait_for_function("() => document.querySelector('#build-log').textContent.includes('built: version 1')")
        log = page.locator("#build-log").inner_text()
        assert "RUN pip install --no-cache-dir cowsay" in log
        # a fresh store runs pip; an earlier build of the same line on the same base is reused
        assert "Successfully installed cowsay" in log or "Using cache" in log
        page.screenshot(path=str(shots / "03-built.png"))

        # the spawn page offers it; JupyterLab starts on it
        page.goto(f"{hub.url}/hub/spawn")
        choices = page.locator("#gemhub-image").inner_text()
        assert "Host OS (fallback: the machine's own Python, not an image)" in choices
        assert f"base v{base['latest_version']} [latest] (official)" in choices
        option = page.locator(f"#gemhub-image option:has-text('{image_name} v1')")
        page.select_option("#gemhub-image", option.get_attribute("value"))
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=120_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=90_000)
        page.locator(".jp-LauncherCard:visible:has-text('Terminal')").first.click()
        # the first terminal of a fresh environment on a loaded 2-core machine takes a while
        page.wait_for_selector(".jp-Terminal .xterm-screen", timeout=120_000)
        time.sleep(1.5)
        page.locator(".jp-Terminal").last.click()
        page.keyboard.type("cowsay -t $COW_SAYS | tee cow.txt; cat /etc/os-release > os.txt;"
                           " pip list 2>/dev/null > pip.txt; echo $GEMHUB_IMAGE > image.txt")
        page.keyboard.press("Enter")
        cow = wait_text(page, hub.url, name, "code/cow.txt")
        assert "moo" in cow and "^__^" in cow, cow
        assert "Debian GNU/Linux 12 (bookworm)" in wait_text(page, hub.url, name, "code/os.txt")
        pip = wait_text(page, hub.url, name, "code/pip.txt")
        assert "cowsay" in pip and "jupyterlab" in pip
        # the host's venv packages are not there: the image has only what it installed
        assert "kubernetes_asyncio" not in pip and "kubernetes-asyncio" not in pip
        assert wait_text(page, hub.url, name, "code/image.txt").strip() == f"{image_name}:v1"
        page.screenshot(path=str(shots / "04-cowsay-terminal.png"))
