"""The search page in a real headless Chromium, against a real uvicorn server on a free port.

Needs Debian's `chromium` and `chromium-driver` (CI installs them, see .ci/run) and selenium (the
`dev` extra); skipped where they are missing. Screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from service.app import WEB, create_app
from tests.service.conftest import settings_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
QUERY = "a small red ball bounces on grass"


# ------------------------------------------------------------------------------ no browser needed


def test_page_never_puts_data_in_html_and_loads_nothing_from_outside() -> None:
    js = (WEB / "app.js").read_text()
    sinks = re.findall(r"\.(?:inner|outer)HTML\b|insertAdjacentHTML|document\.write|\beval\(", js)
    assert sinks == []
    for name in ("index.html", "app.js", "style.css"):
        text = (WEB / name).read_text()
        external = [u for u in re.findall(r"https?://[^\s\"')]+", text) if "www.w3.org" not in u]
        assert external == [], (name, external)


# ------------------------------------------------------------------------------ fixtures


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def _serving(app: Any) -> Iterator[str]:
    """`app` behind a real uvicorn server on a free port, in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert thread.is_alive(), "uvicorn stopped while starting"
        try:
            if _get(f"{url}/readyz")[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "the server did not become ready"
        time.sleep(0.1)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def base_url(served, engine) -> Iterator[str]:
    with _serving(create_app(settings_for(served), engine=engine)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip(
            "needs /usr/bin/chromium and /usr/bin/chromedriver (CI installs them: "
            "apt-get install chromium chromium-driver, see .ci/run)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (the dev extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--mute-audio",
        # The microphone: a fake device (a beep) and no permission prompt.
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # A driver path given: Selenium Manager is never asked (nothing is downloaded).
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------ helpers


def _wait(driver: Any, what: Any, timeout: float = 60, poll: float = 0.1) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=poll).until(what)


def _cards(driver: Any) -> list[Any]:
    return driver.find_elements("css selector", "#results .card")


def _open(driver: Any, base_url: str) -> None:
    driver.get(f"{base_url}/")
    # The module ran: it fills in the index line from /v1/index.
    _wait(driver, lambda d: d.find_element("id", "index-info").text.strip())


def _settle(driver: Any, done: Any, what: str, shown: tuple[str, ...], timeout: float) -> None:
    """Wait until `done(driver)`; fail at once, with the page's message, if it shows an error
    instead, and with the text of the `shown` elements and the page's log if neither comes."""
    from selenium.common.exceptions import TimeoutException

    def settled(d: Any) -> str | None:
        if done(d):
            return "done"
        return "error" if d.find_element("id", "error").is_displayed() else None

    try:
        outcome = _wait(driver, settled, timeout=timeout)
    except TimeoutException:
        page = {name: driver.find_element("id", name).text for name in shown}
        pytest.fail(
            f"no {what} within {timeout:.0f} s; the page: {page}; "
            f"its log: {driver.get_log('browser')}"
        )
    if outcome == "error":
        pytest.fail(f"{what}: {driver.find_element('id', 'error').text}")


def _wait_for_results(driver: Any, label: str, timeout: float = 60) -> None:
    """Wait until the page shows the results for `label` (or fail with why not: `_settle`)."""
    _settle(
        driver,
        lambda d: label in d.find_element("id", "results-heading").text,
        f"results for {label!r}",
        ("results-heading", "status", "error", "record-message"),
        timeout,
    )


def _search_text(driver: Any, query: str) -> list[Any]:
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element("id", "query")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    _wait_for_results(driver, f"“{query}”")
    return _wait(driver, _cards)


def _no_horizontal_scroll(driver: Any) -> bool:
    return driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth <= e.clientWidth;"
    )


def _api_search(base_url: str, query: str) -> dict[str, Any]:
    body = json.dumps({"query": query, "target": "video", "k": 10}).encode()
    req = urllib.request.Request(
        f"{base_url}/v1/search/text", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def _no_script_errors(driver: Any) -> None:
    """No uncaught exception in the page since the last look (the log is read destructively)."""
    log = driver.get_log("browser")
    assert [e for e in log if e["level"] == "SEVERE" and e.get("source") == "javascript"] == []


MEDIA_STATE = """
const m = document.getElementById('player-element');
if (!m) return null;
return {tag: m.tagName.toLowerCase(), ready: m.readyState, seeking: m.seeking,
        time: m.currentTime, error: m.error && m.error.code, src: m.currentSrc,
        played_from: m.played.length ? m.played.start(0) : null};
"""


def _play_and_check(
    driver: Any, card: Any, hit: dict[str, Any], screenshot: str, keyboard: bool = False
) -> None:
    """Click a card (or focus it and press Enter): the player opens at the hit's start; Escape
    closes it and the focus goes back to the card."""
    from selenium.webdriver.common.keys import Keys

    start_s = float(card.get_attribute("data-start-s"))
    assert start_s == pytest.approx(hit["start_s"])
    if keyboard:
        card.send_keys(Keys.ENTER)
    else:
        card.click()
    _wait(driver, lambda d: d.find_element("id", "player").get_attribute("open") is not None)

    def at_start(d: Any) -> dict[str, Any] | None:
        s = d.execute_script(MEDIA_STATE)
        assert s is None or not s["error"], f"the media did not load: {s}"
        if not s or s["ready"] < 2 or s["seeking"]:
            return None
        # currentTime, or (a short clip may play past the window between two polls) where the
        # first played range began.
        near = abs(s["time"] - start_s) <= 0.3 or (
            s["played_from"] is not None and abs(s["played_from"] - start_s) <= 0.3
        )
        return s if near else None

    state = _wait(driver, at_start, timeout=30, poll=0.05)
    assert state["tag"] == ("video" if hit["has_video"] else "audio")
    assert state["src"].endswith(hit["media_url"])
    driver.save_screenshot(str(ARTIFACTS / screenshot))

    driver.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    _wait(driver, lambda d: d.find_element("id", "player").get_attribute("open") is None)
    # the dialog's "close" event, which stops the media and gives focus back, is a task queued
    # after `open` goes: wait for it, then check what it did
    _wait(driver, lambda d: d.execute_script(MEDIA_STATE) is None)
    assert driver.switch_to.active_element == card
    assert driver.execute_script(MEDIA_STATE) is None


# ------------------------------------------------------------------------------ the browser tests


def test_search_then_play_from_the_matched_segment(browser, base_url) -> None:
    _open(browser, base_url)
    assert browser.title.startswith("trimodal")
    cards = _search_text(browser, QUERY)
    assert len(cards) == 10  # a full first page of the 12-item index

    # The cards show what the API answered, in its order.
    api = _api_search(base_url, QUERY)
    first = cards[0]
    hit = api["hits"][0]
    assert [c.get_attribute("data-id") for c in cards] == [h["id"] for h in api["hits"]]
    assert f"{hit['start_s']:.2f}–{hit['end_s']:.2f} s" in first.text
    assert first.find_elements("css selector", "svg.timeline rect.bar")
    meta = browser.find_element("id", "meta").text
    assert meta.startswith("Index v") and "ms total" in meta
    browser.save_screenshot(str(ARTIFACTS / "web_results.png"))

    _play_and_check(browser, first, hit, "web_player.png")

    # The first hit may well start at 0 s; the latest-starting one checks a real seek (opened
    # from the keyboard this time).
    latest = max(range(len(cards)), key=lambda i: api["hits"][i]["start_s"])
    if api["hits"][latest]["start_s"] > 0.5:
        hit = api["hits"][latest]
        _play_and_check(browser, cards[latest], hit, "web_player_seek.png", keyboard=True)

    # More results: the next page is appended (12 items in all, so that is the end).
    more = browser.find_element("id", "more")
    assert more.is_displayed()
    more.click()
    _wait(browser, lambda d: len(_cards(d)) == 12)
    _wait(browser, lambda d: not d.find_element("id", "more").is_displayed())
    ids = [c.get_attribute("data-id") for c in _cards(browser)]
    assert len(set(ids)) == 12
    _no_script_errors(browser)


def test_api_errors_show_in_the_message_area(browser, base_url) -> None:
    from selenium.webdriver.common.keys import Keys

    _open(browser, base_url)
    box = browser.find_element("id", "query")
    browser.execute_script("arguments[0].value = 'x'.repeat(1001)", box)  # over the API's limit
    box.send_keys(Keys.ENTER)
    error = browser.find_element("id", "error")
    _wait(browser, lambda _: error.is_displayed())
    assert "HTTP 422" in error.text and "invalid_request" in error.text
    _no_script_errors(browser)


def test_phone_width_is_one_column_without_horizontal_scroll(browser, base_url) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 360, "height": 740, "deviceScaleFactor": 2, "mobile": True},
    )
    try:
        _open(browser, base_url)
        assert browser.execute_script("return window.innerWidth") == 360
        assert _no_horizontal_scroll(browser)
        cards = _search_text(browser, QUERY)
        assert len({round(c.rect["x"]) for c in cards}) == 1  # one column
        assert _no_horizontal_scroll(browser)
        browser.save_screenshot(str(ARTIFACTS / "web_phone.png"))
        cards[0].click()
        _wait(browser, lambda d: (d.execute_script(MEDIA_STATE) or {}).get("ready", 0) >= 1)
        assert _no_horizontal_scroll(browser)
        width = browser.execute_script(
            "return document.getElementById('player').getBoundingClientRect().width"
        )
        assert width <= 360
        browser.save_screenshot(str(ARTIFACTS / "web_phone_player.png"))
        _no_script_errors(browser)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_upload_a_video_file(browser, base_url, served) -> None:
    _open(browser, base_url)
    clip = sorted((served["corpus"] / "media").glob("*.mp4"))[0]
    browser.find_element("css selector", 'input[name="target"][value="audio"]').click()
    browser.find_element("id", "file").send_keys(str(clip))
    _wait_for_results(browser, clip.name)
    cards = _wait(browser, _cards)
    assert cards
    assert "query 3.00 s long" in browser.find_element("id", "meta").text
    _no_script_errors(browser)


HOSTILE = '<img src=x onerror="window.pwned = 1">&amp; <b>bold</b>'
FAKE_FETCH = """
const fake = %s;
const real = window.fetch;
window.fetch = (url, init) => String(url).includes('/v1/search/text')
  ? Promise.resolve(new Response(JSON.stringify(fake),
                                 {headers: {'Content-Type': 'application/json'}}))
  : real(url, init);
"""


def test_api_text_is_shown_as_text_and_long_timelines_are_binned(browser, base_url) -> None:
    steps = 4 * 3600  # an hour at 4 steps a second
    hit = {
        "id": HOSTILE,
        "score": 0.5,
        "pooled_score": 0.5,
        "start_s": 1800.0,
        "end_s": 1803.0,
        "timeline": [((i * 7919) % 101) / 101 for i in range(steps)],
        "steps_per_second": 4.0,
        "title": HOSTILE,
        "duration_s": 3600.0,
        "has_audio": True,
        "has_video": False,
        "media_url": "/v1/items/x/media",
        "thumbnail_url": None,
    }
    page = {"hits": [hit], "offset": 0, "k": 10, "index_version": HOSTILE, "timings_ms": {}}
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_FETCH % json.dumps(page)}
    )
    try:
        _open(browser, base_url)
        (card,) = _search_text(browser, "anything")
        assert card.find_element("css selector", ".title").text == HOSTILE
        assert HOSTILE in browser.find_element("id", "meta").text
        assert card.find_elements("css selector", "img") == []  # sound only: a placeholder
        assert "sound only" in card.text
        bars = card.find_elements("css selector", "svg.timeline rect.bar")
        assert 0 < len(bars) <= 120
        assert card.find_elements("css selector", "svg.timeline rect.bar.hit")
        assert browser.execute_script("return window.pwned") is None
        assert _no_horizontal_scroll(browser)
        _no_script_errors(browser)
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


# The server's first `busy_answers` search answers are "busy" (503 + Retry-After: 1), as a server
# whose slots are all held answers; the rest reach the real server. Counted in window.busyAnswers.
BUSY_FETCH = """
window.busyAnswers = 0;
const real = window.fetch;
window.fetch = (url, init) => {
  if (String(url).includes('/v1/search/') && window.busyAnswers < %d) {
    window.busyAnswers += 1;
    const body = {error: {code: 'busy', message: 'the server is busy; retry shortly'}};
    return Promise.resolve(new Response(JSON.stringify(body), {
      status: 503, headers: {'Content-Type': 'application/json', 'Retry-After': '1'}}));
  }
  return real(url, init);
};
"""


@pytest.mark.parametrize("busy_answers", [2, 4])
def test_a_busy_server_is_asked_again_after_the_wait_it_names(
    browser, base_url, busy_answers
) -> None:
    """A search that lands while every slot is held (other searches, an upload) is
    tried again by itself after the server's Retry-After, three times at most; past that the
    message says the server is busy and when to try again."""
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": BUSY_FETCH % busy_answers}
    )
    try:
        _open(browser, base_url)
        started = time.monotonic()
        if busy_answers <= 3:
            cards = _search_text(browser, QUERY)
            assert len(cards) == 10
            assert time.monotonic() - started >= busy_answers * 1.0  # it waited as asked
            assert not browser.find_element("id", "error").is_displayed()
        else:
            browser.find_element("id", "query").send_keys(QUERY, "\n")
            error = browser.find_element("id", "error")
            _wait(browser, lambda _: error.is_displayed())
            assert "busy" in error.text and "HTTP 503" in error.text and "1 s" in error.text
            assert browser.execute_script("return window.busyAnswers") == 4  # 1 + 3 retries
            assert _cards(browser) == []
        _no_script_errors(browser)
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


# A server whose index weighs what a sentence names answers text searches with `read_as`.
READ_AS_FETCH = """
const realFetch = window.fetch;
window.fetch = async (url, init) => {
  const response = await realFetch(url, init);
  if (!String(url).includes('/v1/search/text') || !response.ok) return response;
  const body = await response.json();
  const kinds = ['ball', 'bell', 'drum', 'clock'];
  body.read_as = {kind: kinds.map((value, i) => ({value, probability: 0.9 - 0.1 * i})),
                  colour: [{value: 'red', probability: 0.97}], tempo: []};
  return new Response(JSON.stringify(body), {status: 200, headers: response.headers});
};
"""


def test_the_page_shows_how_a_sentence_was_read(browser, base_url) -> None:
    """Where a text search's response says what the sentence was read to name, the results'
    line shows it (the likeliest three values of an attribute, "?" for one read as nothing);
    where it says nothing, nothing."""
    _open(browser, base_url)
    _search_text(browser, QUERY)
    if _api_search(base_url, QUERY).get("read_as") is None:
        assert "read as" not in browser.find_element("id", "meta").text
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": READ_AS_FETCH}
    )
    try:
        _open(browser, base_url)
        _search_text(browser, QUERY)
        meta = browser.find_element("id", "meta").text
        assert "read as kind ball or bell or drum or …, colour red, tempo ?" in meta
        _no_script_errors(browser)
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def test_record_button_off_without_get_user_media(browser, base_url) -> None:
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "delete Navigator.prototype.mediaDevices;"},
    )
    try:
        _open(browser, base_url)
        assert not browser.find_element("id", "record").is_enabled()
        message = browser.find_element("id", "record-message")
        assert message.is_displayed() and "upload a file instead" in message.text
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def _wait_for_recording(driver: Any, timeout: float = 60) -> None:
    """Wait until the Record button shows a recording (or fail with why not: `_settle`)."""
    _settle(
        driver,
        lambda d: d.find_element("id", "record").get_attribute("aria-pressed") == "true",
        "recording",
        ("record", "record-message", "error"),
        timeout,
    )


# The browser grants the microphone only when the test says so (as a user decides in their own
# time: a fixed delay was once shorter than two clicks on a loaded machine, the first recording
# started before the second click and that click stopped it), and counts how often it was
# asked. What it grants is a tone made in the page, not Chromium's fake device: in one CI run
# the device's stream had not come 60 s after the clicks (under load, with nothing on the page
# to say why), and what this test checks is the page's own logic;
# `test_record_from_the_microphone` records from the device itself.
SLOW_MICROPHONE = """
window.microphoneAsked = 0;
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.microphoneAsked += 1;
  return new Promise((resolve) => {
    window.grantMicrophone = () => {
      const context = new AudioContext();
      const tone = context.createOscillator();
      const out = context.createMediaStreamDestination();
      tone.frequency.value = 660;
      tone.connect(out);
      tone.start();
      resolve(out.stream);
    };
  });
};
"""


def test_a_second_click_while_the_microphone_is_asked_for_starts_nothing(browser, base_url) -> None:
    """Two clicks on "Record" before the browser grants the microphone ask for it once and make
    one recording (before, each started its own recorder, and the first was never stopped)."""
    script = browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": SLOW_MICROPHONE}
    )
    try:
        _open(browser, base_url)
        button = browser.find_element("id", "record")
        assert button.is_enabled()
        button.click()
        button.click()
        assert browser.execute_script("return window.microphoneAsked") == 1
        assert button.get_attribute("aria-pressed") != "true"
        browser.execute_script("window.grantMicrophone()")
        _wait_for_recording(browser)
        time.sleep(1.0)
        assert browser.execute_script("return window.microphoneAsked") == 1
        button.click()
        _wait_for_results(browser, "your recording")
        assert _wait(browser, _cards)
        assert browser.find_element("id", "record").get_attribute("aria-pressed") == "false"
        _no_script_errors(browser)
    finally:
        browser.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def test_record_from_the_microphone(browser, base_url) -> None:
    _open(browser, base_url)
    button = browser.find_element("id", "record")
    assert button.is_enabled()  # localhost is a secure context
    button.click()
    _wait_for_recording(browser)
    time.sleep(1.5)
    button.click()
    _wait_for_results(browser, "your recording")
    assert _wait(browser, _cards)
    assert not browser.find_element("id", "error").is_displayed()
    _no_script_errors(browser)


def _audio_only_webm(src: Path, out: Path) -> Path:
    """The clip's sound alone, as Opus in WebM: browsers type a .webm "video/webm"."""
    import av

    with av.open(str(src)) as inp, av.open(str(out), "w", format="webm") as dst:
        stream = dst.add_stream("libopus", rate=48000, layout="mono")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=48000)
        for frame in inp.decode(audio=0):
            for chunk in resampler.resample(frame):
                dst.mux(stream.encode(chunk))
        for chunk in resampler.resample(None):
            dst.mux(stream.encode(chunk))
        dst.mux(stream.encode(None))
    return out


def test_an_audio_only_webm_is_searched_as_sound(browser, base_url, served, tmp_path) -> None:
    """The page routes uploads by the browser's type; a sound-only .webm is typed video/webm,
    the video route answers no_streams, and the page asks the audio route instead."""
    clip = sorted((served["corpus"] / "media").glob("*.mp4"))[1]
    webm = _audio_only_webm(clip, tmp_path / "sound-only.webm")
    _open(browser, base_url)
    browser.find_element("id", "file").send_keys(str(webm))
    _wait_for_results(browser, webm.name)
    assert _wait(browser, _cards)
    assert browser.find_element("id", "error").is_displayed() is False
    assert "query 3.0" in browser.find_element("id", "meta").text
    _no_script_errors(browser)


# ------------------------------------------------------------------------------ make demo, trained


EXCERPT_S = 2.5


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    """What `make demo` builds, as it builds it (service.demo.demo with its defaults: 400 SynthAV
    clips, the small preset, the index; 5-9 minutes on two cores, by the machine), without
    serving."""
    from service.demo import demo

    out = tmp_path_factory.mktemp("demo")
    demo(out=out, serve=False)
    return out


def _sound_excerpts(run: Path, out: Path, n: int) -> list[tuple[str, float, Path]]:
    """(clip id, cut offset in s, WAV path): a 2.5 s piece of each of the first n clips' sound,
    cut at a random offset (seeded)."""
    import numpy as np

    from benchmarks.bench_timing import _write_wav
    from models.media import decode_audio
    from training.datasets import load_manifest

    rng = np.random.default_rng(7)
    found = []
    for item in load_manifest(run / "corpus" / "manifest.jsonl")[:n]:
        samples, rate = decode_audio(run / "corpus" / item.video)
        offset = round(float(rng.uniform(0.3, len(samples) / rate - EXCERPT_S - 0.3)), 3)
        piece = samples[round(offset * rate) : round((offset + EXCERPT_S) * rate)]
        wav = out / f"{item.id}-at-{offset}.wav"
        _write_wav(wav, piece, rate)
        found.append((item.id, offset, wav))
    return found


def _upload(base_url: str, path: Path, target: str) -> dict[str, Any]:
    import httpx

    r = httpx.post(
        f"{base_url}/v1/search/audio",
        files={"file": (path.name, path.read_bytes(), "audio/wav")},
        data={"options": json.dumps({"target": target, "k": 10})},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the timer covers the module's `make demo` build (the fixture)
def test_make_demo_finds_a_sound_excerpt_and_highlights_its_segment(
    browser, demo_run, tmp_path
) -> None:
    """The issue's scenario on `make demo`: 2.5 s of an indexed clip's sound, uploaded, finds
    that clip first with the segment it was cut from. Over 40 excerpts through the API (floors well
    under what was measured, far above chance: 1 in 400), then one that was found and placed,
    uploaded in the page: its first card is the clip and the timeline highlights the steps the
    excerpt came from. Measured 2026-12-03 on this draw of 40 pieces with the demo's 400 clips
    (docs/quality-log.md "A piece of a recording"): 39 first, all 39 placed within 0.25 s, 35 by the
    sound's landmarks (600 clips, 2026-12-01: 39, 39, 36) — the demo's model is weaker than the
    benchmark's (320 training clips), the landmarks do not depend on it. Since the dense prints
    (`models.prints`; every 2.5 s piece of a decoded clip found on the benchmark's pools) the pieces
    must also come with `print_ber` (floor 36) and the card say "same recording";
    passed 2026-12-04 (counts not recorded)."""
    from service.settings import Settings

    settings = Settings(
        index=demo_run / "index",
        ckpt=demo_run / "model" / "best",
        reload_poll_s=0,
        cache_dir=demo_run / "service-cache",
    )
    excerpts = _sound_excerpts(demo_run, tmp_path, 40)
    with _serving(create_app(settings)) as url:
        answers = [_upload(url, wav, "audio")["hits"] for _, _, wav in excerpts]
        first = [hits[0] for hits in answers]
        right = [
            (clip, offset, wav, hit)
            for (clip, offset, wav), hit in zip(excerpts, first, strict=True)
            if hit["id"] == clip
        ]
        placed = [r for r in right if abs(r[3]["start_s"] - r[1]) <= 0.25]
        assert len(right) >= 36, [(c, h["id"]) for c, _, _, h in right]
        assert len(placed) >= 36, [(o, h["start_s"]) for _, o, _, h in right]
        # found by the sound's signal, whatever the demo's model learned: its dense prints
        # (`models.prints`) and its landmarks (`models.fingerprint`)
        assert sum(r[3]["print_ber"] is not None for r in right) >= 36
        assert sum(r[3]["landmark_votes"] is not None for r in right) >= 34

        clip, offset, wav, hit = placed[0]
        _open(browser, url)
        browser.find_element("css selector", 'input[name="target"][value="audio"]').click()
        browser.find_element("id", "file").send_keys(str(wav))
        _wait_for_results(browser, wav.name)
        cards = _wait(browser, _cards)
        assert cards[0].get_attribute("data-id") == clip
        start = float(cards[0].get_attribute("data-start-s"))
        assert abs(start - offset) <= 0.25
        assert f"{hit['start_s']:.2f}–{hit['end_s']:.2f} s" in cards[0].text
        assert "same recording" in cards[0].text
        # The band over the matched steps, and the bars inside it marked as the hit.
        sps = hit["steps_per_second"]
        band = cards[0].find_element("css selector", "svg.timeline rect.band")
        assert float(band.get_attribute("x")) == pytest.approx(hit["start_s"] * sps)
        assert float(band.get_attribute("width")) == pytest.approx(
            (hit["end_s"] - hit["start_s"]) * sps
        )
        bars = cards[0].find_elements("css selector", "svg.timeline rect.bar.hit")
        assert bars
        for bar in bars:
            left = float(bar.get_attribute("x"))
            assert hit["start_s"] * sps - 1 <= left < hit["end_s"] * sps
        browser.save_screenshot(str(ARTIFACTS / "web_demo_excerpt.png"))
        _no_script_errors(browser)
