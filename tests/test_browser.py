"""``chump-tui serve`` in a real browser: Chromium from the system's packages, driven by
Playwright (no browser download). What the page receives over its WebSocket is the
console's terminal output; the test reads it (escapes stripped) to know what the browser
draws, and keeps a screenshot of each scenario in ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, stub_gh_env, wait_for
from tests.fleet_rig import free_port

ARTIFACTS = Path(os.environ.get("CHUMP_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[1] / "test-artifacts"))
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


def browser_path() -> str:
    """The system's Chromium (or $CHUMP_BROWSER). Not found is a failure, never a skip:
    ./dev test installs Debian's chromium where it can."""
    for candidate in (os.environ.get("CHUMP_BROWSER", ""), "chromium", "chromium-browser",
                      "google-chrome",
                      "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    pytest.fail("no Chromium found: install Debian's chromium (./dev test does, as root) "
                "or set CHUMP_BROWSER to a Chromium or Chrome binary")


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str  # the printed link, token included
    log: Path

    @property
    def base(self) -> str:
        return self.url.split("?", 1)[0]

    def stop(self) -> None:
        """SIGTERM, as an operator stops it: each browser's console quits (a demo stops its
        agents first), which takes a while; SIGKILL only if it never ends."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def serve(cwd: Path, *args: str, env: dict[str, str] | None = None,
          port: int | None = None) -> Iterator[Served]:
    port = port or free_port()
    log = cwd.parent / f"serve-{port}-{os.urandom(3).hex()}.log"
    with log.open("w") as fh:
        process = subprocess.Popen(
            [sys.executable, "-m", "chump_tui", "serve", "--port", str(port), *args],
            cwd=cwd, env={**os.environ, **(env or {})}, stdout=fh, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)
    served = Served(process, "", log)
    try:
        wait_for(lambda: "?token=" in log.read_text() or process.poll() is not None, 30,
                 "chump-tui serve to print its link")
        assert process.poll() is None, log.read_text()
        served.url = re.search(r"(http://\S+\?token=\S+)", log.read_text()).group(1)  # type: ignore[union-attr]
        wait_for(lambda: _listening(port), 30, "the server to listen")
        yield served
    finally:
        served.stop()
        with contextlib.suppress(OSError):  # the consoles it started, and their agents
            os.killpg(process.pid, signal.SIGKILL)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Page:
    """A browser tab and the terminal bytes it received."""

    page: Any
    received: bytearray = field(default_factory=bytearray)

    def text(self) -> str:
        return ESCAPES.sub(b"", bytes(self.received)).decode("utf-8", "replace")

    def wait_text(self, needle: str, timeout: float = 30) -> None:
        """Poll (through Playwright, which delivers the frames only while it runs) until
        the browser received ``needle``."""
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if time.monotonic() > deadline:
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                (ARTIFACTS / "last-received.txt").write_text(self.text())
                raise AssertionError(f"timed out after {timeout}s waiting for {needle!r} in "
                                     f"the browser; it has: {self.text()[-1500:]!r}")
            self.page.wait_for_timeout(50)

    def press(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=browser_path(),
                                              args=BROWSER_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, url: str) -> tuple[Page, Any]:
    """A new tab on ``url``; the terminal output its WebSocket brings is collected."""
    page = Page(browser.new_page(viewport={"width": 1280, "height": 800}))

    def on_websocket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: page.received.extend(
            payload if isinstance(payload, bytes) else payload.encode()))

    page.page.on("websocket", on_websocket)
    response = page.page.goto(url)
    return page, response


def test_the_demo_in_a_browser_dispatches_runs_and_summarises(tmp_path: Path,
                                                              browser: Any) -> None:
    with serve(tmp_path, "--demo") as served:
        refused, response = open_page(browser, served.base)
        assert response.status == 401 and "needs the link" in refused.page.content()
        assert refused.received == bytearray()  # no app without the token
        wrong, response = open_page(browser, served.base + "?token=not-the-token")
        assert response.status == 401 and wrong.received == bytearray()

        tab, response = open_page(browser, served.url)
        assert response.status == 200
        assert "token=" not in tab.page.url  # it left the address bar for a cookie
        tab.wait_text("DEMO-001")  # the backlog table
        tab.page.click("#terminal")
        tab.press("a", "d")
        tab.wait_text("Dispatch")
        tab.press("Enter")
        tab.wait_text("RUNNING")
        tab.screenshot("browser-monitor")
        tab.press("s")
        tab.wait_text("shipped=")
        tab.screenshot("browser-summary")
        assert tab.page.title() == "chump-tui"
        pids = {int(p) for p in re.findall(r"pid (\d+)", tab.text())}
        assert pids
        served.stop()  # as an operator stops it: each browser's console quits
        # The demo's agents go with its console: none is left running.
        assert not [p for p in pids if _demo_agent_alive(p)]


def _demo_agent_alive(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and \
            "chump_tui.demo_agent" in " ".join(process.cmdline())
    except psutil.Error:
        return False


def test_read_only_refuses_to_touch_and_says_why(tmp_path: Path, browser: Any) -> None:
    with serve(tmp_path, "--demo", "--read-only") as served:
        tab, _ = open_page(browser, served.url)
        tab.wait_text("READ-ONLY")
        tab.page.click("#terminal")
        tab.press("a", "d")
        tab.wait_text("only watches")
        tab.press("b", "k")
        tab.screenshot("browser-read-only")
        assert "Dispatch 1" not in tab.text() and "RUNNING" not in tab.text()


SCRIPT_TITLE = "<script>window.__pwned=1</script> \\e]0;pwned\\a"
IMG_TITLE = "<img src=x onerror=window.__pwned=2>"
ENTITY_TITLE = "<b>&amp; &lt;i&gt;</b>"


def hostile_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A repository whose gaps' titles are script, markup, entities and a terminal escape,
    a stand-in agent that prints escapes of its own, and a stub gh (the real one cannot
    reach GitHub here)."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    (repo / "gaps.yaml").write_text(
        f'gaps:\n  - {{id: WEB-1, title: "{SCRIPT_TITLE}", priority: P1, effort: s, '
        'status: open}\n'
        f'  - {{id: WEB-2, title: "{IMG_TITLE}", priority: P1, effort: s, status: open}}\n'
        f'  - {{id: WEB-3, title: "{ENTITY_TITLE}", priority: P2, effort: s, status: open}}\n')
    git(repo, "add", ".")
    git(repo, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-qm", "init")
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    return repo, {**stub_gh_env(tmp_path), "FAKE_AGENT_MODE": "escapes"}


def test_markup_and_script_from_outside_show_as_text(tmp_path: Path, browser: Any) -> None:
    repo, env = hostile_repo(tmp_path)
    with serve(repo, "--backlog", "gaps.yaml", "--execute", env=env) as served:
        tab, _ = open_page(browser, served.url)
        tab.wait_text("<script>window.__pwned=1</script>")  # the titles, as text
        tab.wait_text(IMG_TITLE[:30])  # as far as its column shows it
        tab.wait_text("␛]0;pwned␇")  # the escape in WEB-1's title, as symbols
        tab.wait_text(ENTITY_TITLE)  # entities stay what they were
        tab.page.click("#terminal")
        tab.press("a", "d")
        tab.wait_text("Dispatch")
        tab.press("Enter")
        tab.wait_text("SHIPPED")  # the agents ran, printing escapes, and shipped
        tab.screenshot("browser-hostile-titles")
        assert tab.page.evaluate("window.__pwned") is None  # no script ran
        assert tab.page.title() == "chump-tui"  # no escape retitled the tab
        assert "\x1b]0;pwned" not in tab.received.decode("utf-8", "replace")
        assert "\x1b]52;" not in tab.received.decode("utf-8", "replace")  # nor the clipboard


def test_a_token_from_before_a_rotation_is_refused(tmp_path: Path, browser: Any) -> None:
    repo, env = hostile_repo(tmp_path)
    token_file = repo / "sessions" / "chump-tui" / "serve-token"
    port = free_port()  # one port throughout: the browser's cookie is for it
    with serve(repo, "--backlog", "gaps.yaml", env=env, port=port) as first:
        old = first.url
        tab, response = open_page(browser, old)
        assert response.status == 200
        cookies = tab.page.context.cookies()
    assert token_file.stat().st_mode & 0o777 == 0o600
    with serve(repo, "--backlog", "gaps.yaml", env=env, port=port) as again:
        assert again.url.split("token=")[1] == old.split("token=")[1]  # kept: links live on
    with serve(repo, "--backlog", "gaps.yaml", "--rotate-token", env=env,
               port=port) as rotated:
        assert rotated.url.split("token=")[1] != old.split("token=")[1]
        stale, response = open_page(browser, rotated.base + "?token=" + old.split("token=")[1])
        assert response.status == 401 and stale.received == bytearray()
        context = browser.new_context()
        old_cookies = [c for c in cookies if c["name"] == f"chump_token_{port}"]
        assert old_cookies  # the first server gave the browser one
        context.add_cookies([{"name": c["name"], "value": c["value"], "url": rotated.base}
                             for c in old_cookies])
        page = context.new_page()
        assert page.goto(rotated.base).status == 401  # the old cookie too
        context.close()


def test_two_browsers_see_one_session_and_only_the_first_owns_it(tmp_path: Path,
                                                                 browser: Any) -> None:
    repo, env = hostile_repo(tmp_path)
    with serve(repo, "--backlog", "gaps.yaml", "--execute", env=env) as served:
        first, _ = open_page(browser, served.url)
        first.wait_text("EXECUTE")  # it opened the repository's session
        second, _ = open_page(browser, served.url)
        second.wait_text("READ-ONLY (pid")  # as a second terminal would
        second.page.click("#terminal")
        second.press("a", "d")
        second.wait_text("only watches")
        second.screenshot("browser-second-read-only")
        first.page.click("#terminal")
        first.press("a", "d")
        first.wait_text("Dispatch")
        first.press("Enter")
        first.wait_text("SHIPPED")
        second.page.click("#terminal")
        second.press("m")
        second.wait_text("SHIPPED")  # the second sees the first's attempts


NGINX_SITE = """
worker_processes 1;
daemon off;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    server {{
        listen 127.0.0.1:{port};
        # README's block, as it is there:
        location /chump/ {{
            proxy_pass http://127.0.0.1:{upstream}/;        # the trailing / strips the prefix
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;   # the console's WebSocket
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


def test_behind_nginx_with_a_path_prefix(tmp_path: Path, browser: Any) -> None:
    nginx = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
    if nginx is None:
        pytest.fail("no nginx: install Debian's nginx (./dev test does, as root)")
    port, upstream = free_port(), free_port()
    site = tmp_path / "nginx"
    site.mkdir()
    user = "user root;" if os.geteuid() == 0 else ""  # its workers read our temp dirs
    (site / "nginx.conf").write_text(NGINX_SITE.format(dir=site, port=port, upstream=upstream,
                                                       user=user))
    proxy = subprocess.Popen([nginx, "-c", str(site / "nginx.conf"), "-p", str(site)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(port), 20, "nginx to listen")
        public = f"http://127.0.0.1:{port}/chump"
        with serve(tmp_path, "--demo", "--public-url", public, port=upstream) as served:
            assert served.url.startswith(public + "/?token=")  # the link names the proxy
            refused, response = open_page(browser, public + "/")
            assert response.status == 401 and refused.received == bytearray()
            tab, response = open_page(browser, served.url)
            assert response.status == 200 and tab.page.url == public + "/"
            tab.wait_text("DEMO-001")  # the page, its scripts and its WebSocket, proxied
            tab.page.click("#terminal")
            tab.press("a", "d")
            tab.wait_text("Dispatch")
            tab.screenshot("browser-behind-nginx")
    finally:
        proxy.terminate()
        proxy.wait(10)
