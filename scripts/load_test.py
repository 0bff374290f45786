"""Load test: N simulated users upload a photo and click patches against a local vitviz server.

    python scripts/load_test.py --users 20 --duration 60                      # starts python app.py itself
    python scripts/load_test.py --users 20 --duration 60 --checkpoint runs/seed-small
    python scripts/load_test.py --url http://127.0.0.1:7860/ --users 5        # a server already running

Each user is a thread with its own Gradio session, and does what a browser does. It opens the
page (fetches it, keeps its heartbeat stream open and runs its load listeners). It uploads its
own photo (a bundled example, cropped and tinted differently per upload, so the model really runs),
runs the analysis and what follows it; then it opens the Attention and the Position-embeddings tabs
in turn and clicks random patches on the tab's photo, pausing like a person between clicks; it
uploads a new photo after every `--clicks` clicks. Like a browser it also runs the listeners of
every gr.State a request changed (that is how a tab draws: "tab redraw"), downloads every picture
a request returns (part of the request's latency), and runs the app's 5-second timer. With
`--reload` every new photo is uploaded from a new page (a new Gradio session; the old page's
heartbeat ends), as when users reload the page or come and go: the server must not keep every past
session's memory.
It stops after `--duration` seconds or `--max-requests` requests, whichever comes first, and prints
the requests, the errors, p50/p95 latency per kind of request, how long a user waits until a tab has
drawn (the request and the redraws it set off), and (when it started the server) the server's memory
over the run.
"""

import argparse
import contextlib
import json
import random
import secrets
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python scripts/load_test.py`: make vitviz importable
from vitviz.app.serve import running_app  # noqa: E402

EXAMPLES = sorted((REPO / "vitviz" / "app" / "examples").glob("*.[jp][pn]g"))
CLICKABLE_PHOTO = "Photo — click a patch"  # the label of the Attention and Position-embeddings photos
CLICK_INPUTS = {"attention click": (1, "query", "local", "en"),  # layer, direction, colour scale, language
                "positions click": ("fixed", "en")}  # colour range, language
PAGE_LOAD_INPUTS = {"language_from_browser": ("en-US",)}  # what the page sends (navigator.language); else defaults
CLICKED_TAB = {"attention click": "attention", "positions click": "positions"}  # the tab (its id) of each click
REQUEST_TIMEOUT_S = 60
MEMORY_EVERY_S = 0.5  # the server's RSS is sampled this often: a few-second run still has a trend


@dataclass
class Results:
    """Latencies (seconds) per kind of request, and the errors, shared by all user threads.
    `until_drawn`: per kind of request that set off redraws, the time until they had all finished."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    until_drawn: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return sum(map(len, self.latencies.values())) + len(self.errors)

    def record(self, kind: str, seconds: float | None, error: str | None = None) -> None:
        with self.lock:
            if error is None:
                self.latencies[kind].append(seconds)
            else:
                self.errors.append(f"{kind}: {error}")

    def record_drawn(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.until_drawn[kind].append(seconds)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def make_photo(rng: random.Random, folder: Path) -> Path:
    """A bundled example, randomly cropped, resized and tinted: a new photo id for the server."""
    image = Image.open(rng.choice(EXAMPLES)).convert("RGB")
    w, h = image.size
    left, top = rng.randrange(w // 4), rng.randrange(h // 4)
    image = image.crop((left, top, left + w * 3 // 4, top + h * 3 // 4))
    image = image.resize((rng.randrange(200, 640), rng.randrange(200, 640)))
    tint = (rng.randrange(80), rng.randrange(80), rng.randrange(80))
    image = Image.blend(image, Image.new("RGB", image.size, tint), 0.2)
    path = folder / f"photo-{rng.getrandbits(32):08x}.jpg"
    image.save(path, quality=85)
    return path


@dataclass
class Listeners:
    """The fn_index of each event listener a simulated user triggers, found in the app's config."""

    page_load: list[list[int]]  # what a page runs when it opens: each load listener and those after it
    upload: int
    analyse: int
    after_analyse: list[int]  # what the browser runs after the analysis of an upload
    tab_open: dict[str, int]  # "attention click" / "positions click" → the select listener of its tab's title
    clicks: dict[str, int]  # "attention click" / "positions click" → its .select listener
    on_change: dict[int, list[int]]  # a gr.State's id → the listeners of its change event
    timer: tuple[int, float]  # the listener of the shell's gr.Timer, and its interval in seconds

    @classmethod
    def of(cls, config: dict) -> "Listeners":
        deps, components = config["dependencies"], config["components"]
        by_name = {d["api_name"]: d["id"] for d in deps}
        tab_items = {c["props"].get("id"): c["id"] for c in components if c["type"] == "tabitem"}
        tab_open = {kind: next(d["id"] for d in deps if d["targets"][0] == [tab_items[tab], "select"])
                    for kind, tab in CLICKED_TAB.items()}
        photos = {c["id"] for c in components if c.get("props", {}).get("label") == CLICKABLE_PHOTO}
        states = {c["id"] for c in components if c["type"] == "state"}
        on_photo = {len(set(d["inputs"]) - states): d["id"] for d in deps
                    if d["targets"][0] in ([i, "select"] for i in photos)}  # told apart by their widget inputs
        clicks = {kind: on_photo[len(inputs)] for kind, inputs in CLICK_INPUTS.items()}
        on_change = defaultdict(list)
        for d in deps:
            if d["targets"][0][0] in states and d["targets"][0][1] == "change":
                on_change[d["targets"][0][0]].append(d["id"])
        # The shell's timer (the Train tab's own runs only once that tab has been opened).
        tick = by_name["rescan_if_changed"]
        ticked = next(d["targets"][0][0] for d in deps if d["id"] == tick)
        timer = next(c for c in components if c["id"] == ticked)
        page_load = [[d["id"], *followers(deps, d["id"])] for d in deps if d["targets"][0][1] == "load"]
        return cls(page_load, by_name["use_upload"], by_name["analyse"], chain(deps, by_name["analyse"]), tab_open,
                   clicks, dict(on_change), (tick, timer["props"]["value"]))


def chain(deps: list[dict], first: int) -> list[int]:
    """The ids of the `.then` listeners that run after listener `first`, in order."""
    after = [d for d in deps if d["id"] > first]
    end = next((i for i, d in enumerate(after) if d["targets"][0][1] != "then"), len(after))
    return [d["id"] for d in after[:end]]


def followers(deps: list[dict], first: int) -> list[int]:
    """The ids of the listeners that run after listener `first` (`.then`, `.success`), in order."""
    after = next((d["id"] for d in deps if d.get("trigger_after") == first), None)
    return [] if after is None else [after, *followers(deps, after)]


class Heartbeat:
    """The stream a page keeps open to the server while it is shown (Gradio's heartbeat): when it
    ends, the server marks the page's session closed. A plain socket and a thread, mostly asleep
    (the server writes a line every 15 s): unlike an HTTP client's stream, a socket can be shut
    from another thread at once, as a browser drops the connection of a page it leaves."""

    def __init__(self, url: str):
        address = urllib.parse.urlsplit(url)
        self.socket = socket.create_connection((address.hostname, address.port or 80), timeout=REQUEST_TIMEOUT_S)
        self.socket.settimeout(None)
        self.socket.sendall(f"GET {address.path} HTTP/1.1\r\nHost: {address.netloc}\r\n"
                            "Accept: text/event-stream\r\n\r\n".encode())
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        try:
            while self.socket.recv(4096):
                pass
        except OSError:  # shut by `close`
            pass

    def close(self) -> None:
        """Leave the page."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_RDWR)
        self.socket.close()
        self.thread.join(timeout=5)


class Session:
    """One browser tab's traffic to a Gradio app, over one keep-alive HTTP connection: the queue
    protocol a browser speaks (join an event, read its result from the session's event stream),
    and like a browser it keeps the page's heartbeat stream open (`Heartbeat`). gradio_client opens
    a new HTTP client (with its TLS context) per request and a heartbeat stream per session: on a
    2-core machine, 20 of them took nearly a core from the server they were measuring."""

    def __init__(self, url: str):
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S)
        self.config = self.http.get("config").raise_for_status().json()
        self.api = self.config.get("api_prefix", "/gradio_api").rstrip("/")
        self.types = {c["id"]: c["type"] for c in self.config["components"]}
        self.defaults = {c["id"]: c.get("props", {}).get("value") for c in self.config["components"]}
        self.deps = {d["id"]: d for d in self.config["dependencies"]}
        self.new_page()

    def new_page(self) -> None:
        """A new Gradio session and its page's heartbeat."""
        self.session_hash = secrets.token_hex(8)
        self.heartbeat = Heartbeat(f"{self.url.rstrip('/')}{self.api}/heartbeat/{self.session_hash}")

    def close(self) -> None:
        self.heartbeat.close()
        self.http.close()

    def reload(self) -> None:
        """A new page: a new Gradio session. The old page's heartbeat ends, as when a user reloads
        or closes a tab; the server decides when to forget its session."""
        self.heartbeat.close()
        self.new_page()

    def page(self) -> dict:
        """The page itself, as a browser asks for it when it opens (the app's config comes with it)."""
        self.http.get("").raise_for_status()
        return {}

    def upload(self, path: Path) -> dict:
        """Upload a file as a browser does; its FileData for a listener's input."""
        with path.open("rb") as f:
            response = self.http.post(f"{self.api}/upload", files=[("files", (path.name, f))])
        return {"path": response.raise_for_status().json()[0], "orig_name": path.name,
                "meta": {"_type": "gradio.FileData"}}

    def run(self, fn_index: int, *values, event_data: dict | None = None) -> dict:
        """Run listener `fn_index`: `values` fill its inputs in order, skipping State inputs (their
        values live on the server); inputs left over send their initial value, as an untouched
        widget does. Then download the files it returns, as the browser shows them. Returns its
        output ("data", "changed_state_ids"), or raises with the server's message."""
        given = iter(values)
        data = [None if self.types[i] == "state" else next(given, self.defaults[i])
                for i in self.deps[fn_index]["inputs"]]
        joined = self.http.post(f"{self.api}/queue/join", json={
            "data": data, "event_data": event_data, "fn_index": fn_index,
            "trigger_id": self.deps[fn_index]["targets"][0][0], "session_hash": self.session_hash})
        if joined.status_code == 503:
            raise RuntimeError("queue full")
        event_id = joined.raise_for_status().json()["event_id"]
        with self.http.stream("GET", f"{self.api}/queue/data", params={"session_hash": self.session_hash}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message["msg"] == "close_stream":
                    break
                if message.get("event_id") == event_id and message["msg"] == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(message.get("output", {}).get("error") or "failed")
                    for url in file_urls(message["output"]["data"]):
                        self.http.get(url).raise_for_status()
                    return message["output"]
        raise RuntimeError("the event stream closed before the result")

    def select(self, fn_index: int, index, *values) -> dict:
        """Select `index` (a tab's position, or [x, y] on an image) for `.select` listener `fn_index`."""
        return self.run(fn_index, *values, event_data={"index": index, "value": None, "selected": True})


def file_urls(data) -> list[str]:
    """The URLs of the files (pictures) in a listener's output data, at any depth."""
    if isinstance(data, dict):
        if data.get("meta", {}).get("_type") == "gradio.FileData" and data.get("url"):
            return [data["url"]]
        return [url for value in data.values() for url in file_urls(value)]
    if isinstance(data, list):
        return [url for value in data for url in file_urls(value)]
    return []


def timed(results: Results, kind: str, request: Callable[[], dict]) -> dict | None:
    """Run `request()`, record its latency or its error under `kind`; its output when it worked."""
    start = time.perf_counter()
    try:
        output = request()
    except Exception as e:  # any failure counts as an error of the run, and the user goes on
        results.record(kind, None, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
        return None
    results.record(kind, time.perf_counter() - start)
    return output


def user(url: str, checkpoint: str, index: int, start_at: float, stop_at: float, max_requests: int,
         clicks_per_photo: int, think_s: float, reload: bool, results: Results, folder: Path) -> None:
    """One simulated user (thread `index`): arrive at `start_at`, then upload and click until `stop_at`."""
    rng = random.Random(index)
    time.sleep(max(0.0, start_at - time.time()))
    try:
        session = Session(url)
        listeners = Listeners.of(session.config)
    except Exception as e:
        results.record("connect", None, f"{type(e).__name__}: {e}")
        return

    def running() -> bool:
        return time.time() < stop_at and results.count() < max_requests

    tick, tick_every_s = listeners.timer
    next_tick = time.time() + tick_every_s

    def request(kind: str, send: Callable[[], dict]) -> bool:
        """One request, then what the browser runs because of it: the change listeners of the
        States the request changed (which draw the tabs), and the app's timer when it is due."""
        nonlocal next_tick
        start = time.perf_counter()
        output = timed(results, kind, send)
        redraws = [listener for state in (output or {}).get("changed_state_ids", [])
                   for listener in listeners.on_change.get(state, [])]
        drawn = [request("tab redraw", lambda: session.run(listener)) for listener in redraws if running()]
        if redraws and len(drawn) == len(redraws) and all(drawn):
            results.record_drawn(kind, time.perf_counter() - start)
        if time.time() >= next_tick and running():
            next_tick += tick_every_s
            timed(results, "timer tick", lambda: session.run(tick))
        return output is not None

    def open_page() -> None:
        """What a browser does when it opens the page: fetch it, then run its load listeners (the
        first example's analysis, the browser's language) and the tab redraws they set off."""
        request("page", session.page)
        for listeners_in_turn in listeners.page_load:
            for listener in listeners_in_turn:
                inputs = PAGE_LOAD_INPUTS.get(session.deps[listener]["api_name"], ())
                if not (running() and request("page load", lambda: session.run(listener, *inputs))):
                    break

    with contextlib.closing(session):
        open_page()
        photos = 0
        while running():
            if reload and photos:
                session.reload()
                open_page()
            photos += 1
            photo = make_photo(rng, folder)
            uploaded = (request("upload", lambda: session.run(listeners.upload, session.upload(photo)))
                        and request("analyse", lambda: session.run(listeners.analyse, checkpoint, "final")))
            photo.unlink()
            if not uploaded:
                continue
            for listener in listeners.after_analyse:
                if running():
                    request("after analyse", lambda: session.run(listener))
            for kind in rng.sample(list(CLICK_INPUTS), len(CLICK_INPUTS)):  # both tabs, in a random order
                time.sleep(rng.uniform(0.5, 1.5) * think_s)
                if not running():
                    break
                request("tab open", lambda: session.run(listeners.tab_open[kind]))
                for _ in range(clicks_per_photo // len(CLICK_INPUTS)):
                    time.sleep(rng.uniform(0.5, 1.5) * think_s)
                    if not running():
                        break
                    x, y = rng.randrange(200), rng.randrange(200)  # the shown photos are at least 200 px a side
                    request(kind, lambda: session.select(listeners.clicks[kind], [x, y], *CLICK_INPUTS[kind]))


def client_checkpoint(config: dict) -> str:
    """The value of the app's checkpoint picker (its first checkpoint) as the server sent it."""
    dropdown = next(c for c in config["components"] if c.get("props", {}).get("label") == "Checkpoint")
    return dropdown["props"]["value"]


def trend(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of (t, y) points: y per unit of t."""
    t, y = np.array(points, dtype=np.float64).T
    return float(np.polyfit(t, y, 1)[0])


def print_table(title: str, rows: list[tuple[str, list[float]]], note: str = "") -> None:
    """One line per (kind, latencies in seconds): count, p50, p95 and max in ms."""
    print(f"{title:<16}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{note}")
    for kind, values in rows:
        if values:
            print(f"{kind:<16}{len(values):>7}{percentile(values, 50) * 1000:>9.0f}"
                  f"{percentile(values, 95) * 1000:>9.0f}{max(values) * 1000:>9.0f}")


def report(results: Results, wall_s: float, memory: list[tuple[float, float]]) -> bool:
    """Print the summary; True when there were no errors."""
    every = [s for values in results.latencies.values() for s in values]
    print(f"\n{len(every) + len(results.errors)} requests in {wall_s:.0f} s "
          f"({(len(every) + len(results.errors)) / wall_s:.1f}/s), {len(results.errors)} errors")
    print_table("kind", sorted(results.latencies.items()) + [("all", every)])
    if results.until_drawn:
        print_table("until drawn", sorted(results.until_drawn.items()),
                    "   (the request and the tab redraws it set off)")
    for error in results.errors[:10]:
        print("error:", error)
    if memory:
        quarters = "  ".join(f"{t:.0f} s: {mb:.0f} MB" for t, mb in (memory[round(q * (len(memory) - 1))]
                                                                    for q in (0, 0.25, 0.5, 0.75, 1)))
        print(f"server RSS  {quarters}  (peak {max(mb for _, mb in memory):.0f} MB)")
        later = memory[len(memory) // 2:]  # past the start, when the caches fill
        if len(later) >= 2:
            print(f"server RSS over the second half: {trend(later) * 60:+.1f} MB a minute (least squares)")
    return not results.errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running vitviz server (default: start python app.py on a free port)")
    parser.add_argument("--checkpoint", help="app.py --checkpoint, for the server this script starts")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests in all")
    parser.add_argument("--clicks", type=int, default=30, help="patch clicks per uploaded photo")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between two clicks of a user, s")
    parser.add_argument("--ramp", type=float, default=10, help="seconds over which the users arrive")
    parser.add_argument("--reload", action="store_true",
                        help="upload every new photo from a new page (a new session), as users who reload")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vitviz-load-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        server = None  # the app this script started, if it started one
        url = args.url
        if url is None:
            app_args = ["--checkpoint", args.checkpoint] if args.checkpoint else []
            server = stack.enter_context(running_app(*app_args, log=folder / "server.log"))
            url = server.url
            print(f"started app.py (pid {server.process.pid}) at {url}")
        with contextlib.closing(Session(url)) as probe:
            checkpoint = client_checkpoint(probe.config)
        print(f"{args.users} users for {args.duration:.0f} s on {checkpoint}, think time {args.think} s" +
              (", a new page per photo" if args.reload else ""))
        results, memory = Results(), []
        start = time.time()
        stop_at = start + args.duration
        threads = [threading.Thread(target=user, args=(url, checkpoint, i, start + i * args.ramp / args.users,
                                                       stop_at, args.max_requests, args.clicks, args.think,
                                                       args.reload, results, folder))
                   for i in range(args.users)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if server is not None:
                memory.append((time.time() - start, rss_mb(server.process.pid)))
            time.sleep(MEMORY_EVERY_S)
        if server is not None:
            memory.append((time.time() - start, rss_mb(server.process.pid)))
        ok = report(results, time.time() - start, memory)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
