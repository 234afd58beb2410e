"""``chump-tui serve``: the very same console, served to browsers over HTTP, behind a token.

Each browser session runs ``chump-tui`` with the flags given here as a process of its own
(textual-serve's model): the first to open the repository's session owns it, every other
one gets the read-only view a second terminal gets (the session lock), and ``--read-only``
makes every one of them read-only. Nothing here draws anything: the page is textual-serve's
(its terminal is xterm.js, which shows text as text), without its web font.

Every request needs the token: ``?token=…`` on the link (answered with a cookie for this
port and path, and a redirect to the same page without it, so it leaves the address bar
and history), or that cookie. No token, a wrong one, or one from before ``--rotate-token``
gets 401 and nothing of the app. The WebSocket that drives a console is accepted only
from a page of this server (its ``Origin``). The token is generated once and kept, 0600,
in the session directory (``sessions/chump-tui/serve-token``), so a shared link outlives a
restart; ``--token-file`` names another file, ``--rotate-token`` writes a new one. TLS is a
reverse proxy's job; ``--public-url`` tells the page where it is served (a path prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import secrets
import shlex
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chump_tui.errors import ChumpError
from chump_tui.outside_text import visible
from chump_tui.safe_fs import open_nofollow

PROG = "chump-tui serve"
TOKEN_FILE = "serve-token"
MAX_SESSIONS = 16  # browser sessions at once: each is a console process
TEMPLATES = Path(__file__).parent / "serve_page"

Handler = Callable[[Any], Awaitable[Any]]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> argparse.NoReturn:  # type: ignore[name-defined]
        self.exit(2, f"{PROG}: error: {message} (try --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, allow_abbrev=False,
                usage=f"{PROG} [--host H] [--port P] [--token-file F] [--rotate-token] "
                      "[--public-url URL] [console flags]",
                description="Serve the console to browsers. Every other flag is the "
                            "console's (--demo, --backlog, --execute, --read-only, ...).")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1; put anything wider "
                        "behind a TLS proxy)")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="the token (made if missing, 0600); default "
                        "sessions/chump-tui/serve-token in the repository")
    p.add_argument("--rotate-token", action="store_true",
                   help="write a new token: links and browsers holding the old one are "
                        "refused")
    p.add_argument("--public-url", default=None, metavar="URL",
                   help="where browsers reach it through a reverse proxy, path prefix "
                        "included (https://ops.example.com/chump)")
    return p


# ------------------------------------------------------------------ the token
def token_path(given: Path | None, console_args: Sequence[str]) -> Path | None:
    """Where the token is kept: ``--token-file``, else the repository's session directory;
    None for the demo (its repository is thrown away: the token is only printed)."""
    if given is not None:
        return given
    if "--demo" in console_args:
        return None
    from chump_tui.repo import resolve_repo_root

    root = None
    for n, arg in enumerate(console_args):
        if arg == "--repo-root" and n + 1 < len(console_args):
            root = Path(console_args[n + 1])
        elif arg.startswith("--repo-root="):
            root = Path(arg.partition("=")[2])
    return resolve_repo_root(root) / "sessions" / "chump-tui" / TOKEN_FILE


def load_token(path: Path | None, rotate: bool) -> str:
    """The kept token, or a new one (written 0600) when there is none or ``rotate``."""
    if path is not None and not rotate:
        try:
            fd = open_nofollow(path, os.O_RDONLY)
            with os.fdopen(fd, encoding="utf-8") as fh:
                token = fh.read().strip()
        except FileNotFoundError:
            token = ""
        except OSError as exc:
            raise ChumpError(f"{path}: cannot read the token ({exc.strerror or exc})") from None
        if token:
            if os.stat(path).st_mode & 0o077:
                raise ChumpError(f"{path}: others may read the token (chmod 600 it, or "
                                 "--rotate-token)")
            if len(token) < 16 or not token.isascii() or not token.isprintable():
                raise ChumpError(f"{path}: not a token (16 or more printable ASCII "
                                 "characters)")
            return token
    token = secrets.token_urlsafe(32)
    if path is not None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token + "\n")
        os.replace(tmp, path)
    return token


# ------------------------------------------------------------------ the server
def make_server(console_args: Sequence[str], host: str, port: int, token: str,
                public_url: str | None) -> Any:
    """textual-serve's server for ``chump-tui CONSOLE_ARGS``, behind ``token``."""
    import textual_serve
    from aiohttp import web
    from textual_serve.server import Server

    command = shlex.join([sys.executable, "-m", "chump_tui", *console_args])
    statics = Path(textual_serve.__file__).parent / "static"
    public = (public_url or f"http://{host}:{port}").rstrip("/")
    parts = urlsplit(public)
    cookie = f"chump_token_{port}"
    cookie_path = (parts.path or "") + "/"
    ws_origin = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"

    def token_ok(given: str) -> bool:
        return hmac.compare_digest(given.encode(), token.encode())

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.query.get("token")
        if given is not None:
            if not token_ok(given):
                return refused()
            # The token leaves the address bar (and the history) for a cookie.
            query = {k: v for k, v in request.query.items() if k != "token"}
            target = request.rel_url.with_query(query)
            location = f"{parts.path}{target}" if parts.path else str(target)
            moved = web.HTTPSeeOther(location)
            moved.set_cookie(cookie, token, httponly=True, samesite="Strict",
                             path=cookie_path, secure=parts.scheme == "https")
            return moved
        if not token_ok(request.cookies.get(cookie, "")):
            return refused()
        if request.path == "/ws" and not same_origin(request):
            return web.Response(status=403, text="chump-tui: not from this server's page\n")
        response: web.StreamResponse = await handler(request)
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
            f"'unsafe-inline'; img-src 'self' data:; connect-src 'self' {ws_origin}; "
            "frame-ancestors 'none'")
        return response

    def same_origin(request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser page: it has the token, and no page to trick
        netloc = urlsplit(origin).netloc
        return netloc in (request.host, parts.netloc)

    def refused() -> web.Response:
        return web.Response(status=401, text="chump-tui: this needs the link with its "
                                             "token (chump-tui serve printed it)\n",
                            headers={"Cache-Control": "no-store"})

    class ConsoleServer(Server):
        sessions: set[asyncio.Task[Any]] = set()  # each browser's console

        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
            if len(self.sessions) >= MAX_SESSIONS:
                raise web.HTTPServiceUnavailable(text=f"chump-tui: {MAX_SESSIONS} browser "
                                                      "sessions already\n")
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.sessions.discard(task)

        async def on_startup(self, app: web.Application) -> None:
            pass  # the launcher says where it listens

        async def on_shutdown(self, app: web.Application) -> None:
            """Stopping: each browser's console is told to quit, as closing its tab does
            (a demo stops its agents; a real session's agents run on, re-attached by the
            next console), instead of waiting out aiohttp's minute."""
            open_now = list(self.sessions)
            for task in open_now:
                task.cancel()
            if open_now:
                await asyncio.wait(open_now, timeout=30)

    return ConsoleServer(command, host=host, port=port, title="chump-tui", public_url=public,
                         statics_path=statics, templates_path=TEMPLATES)


def run_serve_cli(argv: Sequence[str], check_console_args: Callable[[list[str]], object]) -> int:
    """``check_console_args``: the console's own flag parsing (one line and exit 2)."""
    ns, console_args = build_parser().parse_known_args(list(argv))
    try:
        return _serve(ns, console_args, check_console_args)
    except ChumpError as exc:
        print(visible(f"{PROG}: {exc}"), file=sys.stderr)
        return 2


def _serve(ns: argparse.Namespace, console_args: list[str],
           check_console_args: Callable[[list[str]], object]) -> int:
    if not 0 < ns.port < 65536:
        raise ChumpError(f"--port {ns.port}: choose 1 to 65535")
    if ns.public_url is not None:
        parts = urlsplit(ns.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ChumpError(f"--public-url {ns.public_url!r}: an http(s) URL, path prefix "
                             "allowed, no query")
    if any(a in ("--no-tui", "--self-test", "-h", "--help") for a in console_args):
        raise ChumpError("serve runs the console: --no-tui, --self-test and --help are "
                         "not for it")
    check_console_args(console_args)  # a bad console flag is one line now, not in every browser
    path = token_path(ns.token_file, console_args)
    token = load_token(path, ns.rotate_token)
    server = make_server(console_args, ns.host, ns.port, token, ns.public_url)
    link = f"{server.public_url}/?token={token}"
    print(f"{PROG}: the console for browsers at {link}", flush=True)
    print(f"{PROG}: " + (f"token kept in {path} (--rotate-token makes a new one)"
                         if path is not None else "the demo's token is only printed here"),
          flush=True)
    if ns.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"{PROG}: listening on {ns.host} without TLS: anyone on the path can read the "
              "token; put it behind a TLS proxy (README: Serving it to a browser)",
              file=sys.stderr, flush=True)
    if "--read-only" in console_args:
        print(f"{PROG}: read-only: nothing can be dispatched, killed, retried or removed",
              flush=True)
    server.serve()
    return 0
