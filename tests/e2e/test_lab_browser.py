"""The environment from the inside, in a real browser: the GPU panel with a (simulated)
accelerator slice and the run-time countdown (also on the hub's home page), CPU and memory
from jupyter-resource-usage, a notebook writing a TensorBoard run that TensorBoard shows
both from the launcher and through %tensorboard, a terminal in /gemini/code, and a terminal
job that survives closing the browser. Screenshots go to test-artifacts/lab/."""

from __future__ import annotations

import re
import time

import pytest

from browser import chromium_page, signup_and_login
from hubproc import free_port, unique_name
from labclient import PRESET, accelerated_hub

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUOTA = "/services/quota/api/v1"


def lab_text(page, hub_url: str, user: str, path: str) -> str | None:
    r = page.request.get(f"{hub_url}/user/{user}/api/contents/{path}?content=1&type=file&format=text")
    return r.json()["content"] if r.ok else None


def wait_text(page, hub_url, user, path, until=lambda t: bool(t), timeout=30) -> str:
    deadline = time.monotonic() + timeout
    text = None
    while time.monotonic() < deadline:
        text = lab_text(page, hub_url, user, path)
        if text is not None and until(text):
            return text
        time.sleep(0.5)
    raise AssertionError(f"{path}: {text!r}")


def open_launcher(page) -> None:
    page.click("text=File")
    page.click("text=New Launcher")
    page.wait_for_selector(".jp-Launcher:visible")


@pytest.fixture
def labhub():
    from hubproc import keep_log, workdir

    h = accelerated_hub(workdir())
    h.start()
    yield h
    h.stop()
    keep_log(h, "lab-browser")


def test_gpu_panel_tensorboard_and_terminals(labhub, artifacts):
    hub = labhub
    shots = artifacts / "lab"
    name, password = unique_name("labe2e"), "Gemini-Pass-2026"
    with chromium_page(shots) as page:
        signup_and_login(page, hub.url, name, password)

        # An administrator limits the user's personal workspace to 90 minutes per run.
        token = hub.api("POST", f"/users/{name}/tokens", json={"note": "e2e"}).json()["token"]
        ws = next(w for w in hub.request("GET", f"{QUOTA}/workspaces", token=token).json()["items"] if w["personal"])
        r = hub.request("PATCH", f"{QUOTA}/workspaces/{ws['id']}", token=hub.admin_token,
                        json={"max_runtime_minutes": 90})
        assert r.status_code == 200, r.text
        page.goto(f"{hub.url}/services/quota/workspaces/{ws['id']}")
        limit_text = " ".join(page.locator("#runtime-limit").inner_text().split())
        assert "stops 90 minutes after it starts" in limit_text, limit_text

        page.goto(f"{hub.url}/hub/spawn")
        page.check(f"input[name=preset][value={PRESET}]")
        page.click("#spawn_form input[type=submit], #spawn_form button[type=submit]")
        page.wait_for_url(f"**/user/{name}/lab**", timeout=90_000)
        page.wait_for_selector(".jp-LauncherCard", timeout=60_000)

        # GPU status-bar item: model, simulated label, the memory cap (nothing measured), countdown.
        status = page.locator(".gemhub-gpu-status")
        status.wait_for()
        page.wait_for_function(
            "() => /A100-80G \\(simulated\\)/.test(document.querySelector('.gemhub-gpu-status').textContent)")
        text = status.inner_text()
        assert "40.0 GiB cap" in text and "%" not in text and re.search(r"stops in 1 h (29|30) min", text), text
        status.click()
        panel = page.locator("#gemhub-gpu-panel")
        panel.wait_for()
        assert panel.locator(".gemhub-gpu-simulated").inner_text() == "simulated"
        assert "GPU 0 · A100-80G" in panel.locator(".gemhub-gpu-model").inner_text()
        # a simulated device: its cap, and no invented utilisation, memory use or temperature
        assert panel.locator("tr[data-key=memory] td").inner_text() == "40.0 GiB cap"
        assert panel.locator("tr[data-key=utilization], tr[data-key=temperature]").count() == 0
        assert "no hardware to read" in panel.locator(".gemhub-gpu-note").inner_text()
        assert panel.locator("tr[data-key=compute] td").inner_text() == "50%"
        assert "stops in 1 h" in panel.locator(".gemhub-runtime").inner_text()
        page.wait_for_selector(".jp-LauncherCard:visible:has-text('TensorBoard') img")  # its icon
        # jupyter-resource-usage: CPU against the preset's CPUs, not flagged at idle
        usage = page.locator(".jp-StatusBar-Widget:has-text('CPU:')").first
        usage.wait_for()
        assert "Mem:" in usage.inner_text()
        page.screenshot(path=str(shots / "01-gpu-panel.png"))
        home = page.context.new_page()  # the hub's home page says it too
        home.goto(f"{hub.url}/hub/home")
        countdown = home.locator("tr.gemhub-server[data-server-name=''] .gemhub-stops").inner_text()
        assert re.search(r"stops in 1 h (29|30) min", countdown), countdown
        home.close()

        # A notebook writes a TensorBoard run to /gemini/output.
        open_launcher(page)
        page.locator(".jp-LauncherCard[data-category='Notebook'][title*='Python']:visible").first.click()
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content")
        page.wait_for_selector(".jp-StatusBar-Widget:has-text('Python 3 (ipykernel) | Idle')", timeout=60_000)
        page.locator(".jp-NotebookPanel .jp-Cell .cm-content").first.click()
        page.keyboard.insert_text(
            "from tensorboard.summary import Writer; w = Writer('/gemini/output/notebook-run'); "
            "[w.add_scalar('loss', 1.0 / (s + 1), s) for s in range(20)]; w.close(); print('written')")
        page.keyboard.press("Shift+Enter")
        page.wait_for_selector(".jp-OutputArea-output:has-text('written')", timeout=60_000)
        # %tensorboard in the notebook, through TENSORBOARD_PROXY_URL and the hub's proxy.
        page.keyboard.insert_text(f"%load_ext tensorboard\n%tensorboard --logdir /gemini/output --port {free_port()}")
        page.keyboard.press("Shift+Enter")
        inline = page.frame_locator(".jp-OutputArea-output iframe")
        inline.locator("text=notebook-run").first.wait_for(timeout=90_000)
        assert f"/user/{name}/proxy/" in page.locator(".jp-OutputArea-output iframe").get_attribute("src")
        page.screenshot(path=str(shots / "02-notebook.png"))

        # TensorBoard from the launcher (jupyter-server-proxy), showing that run.
        open_launcher(page)
        page.locator(".jp-LauncherCard:visible:has-text('TensorBoard')").first.click()
        frame = page.frame_locator("iframe[src*='tensorboard']")
        frame.locator("text=notebook-run").first.wait_for(timeout=90_000)
        page.screenshot(path=str(shots / "03-tensorboard.png"))

        # A terminal opens in /gemini/code; a job left running there survives the browser.
        open_launcher(page)
        page.locator(".jp-LauncherCard:visible:has-text('Terminal')").first.click()
        page.wait_for_selector(".jp-Terminal .xterm-screen")
        time.sleep(1.5)  # the shell's prompt
        page.locator(".jp-Terminal").last.click()
        page.keyboard.type("pwd | tee pwd.txt; while true; do date +%s >> alive.txt; sleep 1; done")
        page.keyboard.press("Enter")
        assert wait_text(page, hub.url, name, "code/pwd.txt").strip() == "/gemini/code"
        wait_text(page, hub.url, name, "code/alive.txt")
        page.screenshot(path=str(shots / "04-terminal.png"))
        terminals = page.request.get(f"{hub.url}/user/{name}/api/terminals").json()
        assert len(terminals) == 1

        # Leaving the page closes every websocket of the Lab (as closing the tab does).
        page.goto("about:blank")
        time.sleep(3)
        page.goto(f"{hub.url}/user/{name}/lab")
        page.wait_for_selector(".jp-LauncherCard, .jp-Terminal", timeout=60_000)
        again = page.request.get(f"{hub.url}/user/{name}/api/terminals").json()
        assert [t["name"] for t in again] == [t["name"] for t in terminals]
        before = len(lab_text(page, hub.url, name, "code/alive.txt").split())
        after = len(wait_text(page, hub.url, name, "code/alive.txt",
                              until=lambda t: len(t.split()) >= before + 2, timeout=15).split())
        assert after >= before + 2  # the loop kept running with no browser attached
        page.click("[title='Running Terminals and Kernels'], [data-id='jp-running-sessions']")
        page.wait_for_selector(f".jp-RunningSessions-item:has-text('terminals/{terminals[0]['name']}')")
        page.screenshot(path=str(shots / "05-terminal-survived.png"))
