"""`mgc annotate` in a real Chromium (Debian's `chromium`, driven by Playwright) against the real command: strokes,
eraser, undo / redo, box fill, the sensitivity slider, label correction and playback, checked in the saved PNGs
pixel by pixel; edits that survive navigation and reloads, two tabs and two servers that cannot overwrite each other,
permission errors shown on the page; the server listens on loopback only and serves nothing outside its own files."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import chromium_or_skip, tone, write_audio, write_rows
from PIL import Image

from mgc_lightning.audio.manifest import load_manifest
from mgc_lightning.data.datamodules import MANIFEST_MASKS, mask_loader
from mgc_lightning.frontend.cache import spectrogram_store
from mgc_lightning.frontend.spectrogram import get_preset
from mgc_lightning.masks.ops import candidate_mask

pytestmark = pytest.mark.slow
ORIGIN = get_preset("origin")
RATE = 384_000


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Six recordings with a tone (10-20 kHz, so candidate masks are not empty), two 0.25 s windows each."""
    root = tmp_path_factory.mktemp("annotate")
    rng = np.random.default_rng(1)
    rows = []
    for recording in range(6):
        samples = rng.normal(0, 1e-3, RATE // 2).astype(np.float32) + tone(10_000 + 2_000 * recording, 0.5, RATE)
        write_audio(root / "audio" / f"r{recording}.flac", samples, RATE)
        rows += [[f"audio/r{recording}.flac", start, 0.25, recording % 2, 0, 1, f"r{recording}", "s"]
                 for start in (0, 0.25)]
    return write_rows(root / "manifest.csv", rows)


def unprivileged() -> list[str] | None:
    """The prefix that runs a command without root's right to write anywhere (so a read-only folder is read-only to
    it, as to any user): nothing for a user, setpriv for root; None where root cannot drop it."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def start_annotate(manifest: Path, cache: Path) -> tuple[subprocess.Popen, str, str | None]:
    """The real `mgc annotate` command on a free port: its process, what it printed until it listened or exited, and
    its address (None when it did not start)."""
    command = [sys.executable, "-m", "mgc_lightning.cli", "annotate", str(manifest), "--queue", "all", "--port", "0",
               "--cache-root", str(cache), "--annotator", "tester"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen((unprivileged() or []) + command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, env=env)
    output = []
    deadline = time.monotonic() + 300  # importing torch on a busy machine takes minutes
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        output.append(line)
        if "annotate at http://" in line:
            break
    address = next((line.split()[2] for line in output if line.startswith("annotate at http://")), None)
    return process, "".join(output), address


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def server_process(dataset):
    """One server for the module, started over a lock file left by a server that died (no process holds it)."""
    (dataset.parent / "annotated-origin.server.lock").write_text(json.dumps({"pid": 2**22 + 1, "host": "gone"}))
    process, output, address = start_annotate(dataset, dataset.parent / "cache")
    if address is None:
        process.kill()
        pytest.fail("mgc annotate did not start:\n" + output)
    yield process, address
    stop(process)


@pytest.fixture(scope="module")
def server(server_process) -> str:
    return server_process[1]


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable,
                                             args=["--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


def open_page(browser, server):
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(15_000)
    page.goto(server)
    page.wait_for_function("document.body.dataset.window")
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server)
    yield page
    page.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.load(response)


def shown_window(page, server) -> dict:
    return get_json(f"{server}api/windows/{shown_index(page)}")


def shown_index(page) -> int:
    """The shown window's index, once the page has finished showing one (it is empty while a window loads)."""
    return int(page.wait_for_function("document.body.dataset.window").json_value())


def shown_mask(page) -> str:
    """The mask the page holds for the shown window, as the API writes masks (row 0 first, '0' / '1')."""
    return page.evaluate("Array.from(annotator.state.mask).join('')")


def go_to(page, key: str, index: int) -> None:
    page.keyboard.press(key)
    page.wait_for_function(f"document.body.dataset.window === '{index}'")


def stroke(page, points: list[tuple[int, int]]) -> None:
    """A real mouse drag through image pixels given as (column, row)."""
    at = [page.evaluate(f"annotator.gridToClient({c}, {r})") for c, r in points]
    page.mouse.move(at[0]["x"], at[0]["y"])
    page.mouse.down()
    for point in at[1:]:
        page.mouse.move(point["x"], point["y"], steps=4)
    page.mouse.up()


def expected_stroke(mask: np.ndarray, points: list[tuple[int, int]], radius: int, value: bool) -> None:
    """The page's rule: a disc of `radius` pixels at every pixel of each straight segment."""
    for (c0, r0), (c1, r1) in zip(points, points[1:]):
        steps = max(abs(c1 - c0), abs(r1 - r0))
        for i in range(steps + 1):
            c, r = c0 + (c1 - c0) * i // max(steps, 1), r0 + (r1 - r0) * i // max(steps, 1)
            for dr in range(-radius, radius + 1):
                for dc in range(-radius, radius + 1):
                    if dc * dc + dr * dr <= radius * radius and 0 <= r + dr < mask.shape[0] and 0 <= c + dc < mask.shape[1]:
                        mask[r + dr, c + dc] = value


def saved(dataset: Path, window: dict):
    """The accepted row of a window and its PNG as a boolean array."""
    rows = load_manifest(dataset.parent / "annotated-origin.csv")
    row = next(r for r in rows if r.recording == window["recording"] and r.start_s == window["start_s"])
    png = row.path.parent / row.mask
    image = np.asarray(Image.open(png))
    assert set(np.unique(image)) <= {0, 255}
    return row, image == 255


def accept_and_wait(page, key_or_button: str) -> None:
    before = page.evaluate("document.body.dataset.window")
    counter = page.inner_text("#counter")
    if key_or_button.startswith("#"):
        page.click(key_or_button)
    else:
        page.keyboard.press(key_or_button)
    page.wait_for_function(f"document.getElementById('counter').textContent !== {json.dumps(counter)}")
    page.wait_for_function(f"document.body.dataset.window && document.body.dataset.window !== '{before}'")


def test_paint_erase_undo_redo_and_accept_save_exactly_the_drawn_mask(page, server, dataset):
    window = shown_window(page, server)
    accepted_before = get_json(f"{server}api/session")["accepted"]
    total = get_json(f"{server}api/session")["total"]
    expected = np.zeros((ORIGIN.height, ORIGIN.width), dtype=bool)
    page.keyboard.press("c")  # clear the candidate mask: start from nothing
    page.keyboard.press("b")
    assert page.input_value("#size") == "2"
    stroke(page, [(20, 40), (60, 40), (60, 70)])
    expected_stroke(expected, [(20, 40), (60, 40), (60, 70)], 2, True)
    page.keyboard.press("e")
    page.keyboard.press("[")  # eraser of radius 1
    stroke(page, [(40, 30), (40, 50)])
    expected_stroke(expected, [(40, 30), (40, 50)], 1, False)
    page.keyboard.press("b")
    stroke(page, [(90, 100), (110, 100)])  # undone below, redone, undone again
    page.keyboard.press("z")
    page.keyboard.press("y")
    page.keyboard.press("Control+z")
    page.keyboard.press("1")  # correct the whistle label
    accept_and_wait(page, "a")

    row, mask = saved(dataset, window)
    assert mask.sum() > 100
    assert np.array_equal(mask, expected), f"{np.argwhere(mask != expected)[:10]}"
    assert row.whistle == 1 - window["labels"][0] and row.labels[1:] == tuple(window["labels"][1:])
    assert np.array_equal(mask_loader(ORIGIN, MANIFEST_MASKS, dataset.parent / "cache")(row), expected)
    assert page.inner_text("#counter") == f"{accepted_before + 1} / {total} accepted"
    page.reload()  # reopening resumes after the accepted window
    page.wait_for_function("document.body.dataset.window")
    assert int(page.evaluate("document.body.dataset.window")) == window["index"] + 1


def test_sensitivity_slider_zoom_and_box_fill_shape_the_saved_mask(page, server, dataset):
    window = shown_window(page, server)
    page.evaluate("""(() => { const s = document.getElementById('sensitivity'); s.value = '0.3';
                              s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); })()""")
    page.wait_for_function("document.getElementById('status').textContent.includes('sensitivity 0.30')")
    width = page.evaluate("document.getElementById('view').width")
    page.keyboard.press("+")  # zoomed in, a drag still lands on the image pixels under the mouse
    assert page.evaluate("document.getElementById('view').width") > width
    page.click("#tool-box")
    stroke(page, [(5, 5), (9, 12)])
    accept_and_wait(page, "#accept")

    row, mask = saved(dataset, window)
    image = spectrogram_store(ORIGIN, dataset.parent / "cache").load(row.key)
    expected = candidate_mask(image, 0.3)
    assert not np.array_equal(expected, candidate_mask(image, 0.7))  # the slider changed something
    expected[5:13, 5:10] = True
    assert np.array_equal(mask, expected)


def test_previous_and_skip_walk_the_queue_and_an_accepted_window_shows_its_saved_mask(page, server, dataset):
    start = int(page.evaluate("document.body.dataset.window"))
    page.keyboard.press("p")
    page.wait_for_function(f"document.body.dataset.window === '{start - 1}'")
    assert "mask: accepted (by tester" in page.inner_text("#info")
    page.keyboard.press("s")
    page.wait_for_function(f"document.body.dataset.window === '{start}'")
    assert "mask: candidate" in page.inner_text("#info")


def test_time_expanded_playback_moves_a_cursor_over_the_spectrogram(page, server):
    page.select_option("#slowdown", "20")
    page.keyboard.press(" ")
    page.wait_for_function("document.body.dataset.playing === '1'", timeout=20_000)
    page.wait_for_function("Number(document.body.dataset.cursor) > 0.01", timeout=20_000)
    assert page.evaluate("annotator.state.slowdown") == 20
    assert 0 < float(page.evaluate("document.body.dataset.cursor")) <= 0.25
    page.keyboard.press(" ")
    page.wait_for_function("document.body.dataset.playing === ''")


def test_unsaved_edits_survive_navigation_and_reload_until_accepted_or_discarded(page, server, dataset):
    start = shown_index(page)
    original = shown_window(page, server)["mask"]
    page.keyboard.press("c")
    stroke(page, [(10, 60), (70, 60)])
    drawn = shown_mask(page)
    assert drawn != original
    go_to(page, "s", start + 1)
    go_to(page, "ArrowLeft", start)
    assert shown_mask(page) == drawn and "unsaved edits" in page.inner_text("#info")
    assert page.inner_text("#unsaved") == "1 window with unsaved edits"
    go_to(page, "ArrowRight", start + 1)
    page.click("#skip")
    page.wait_for_function(f"document.body.dataset.window === '{start + 2}'")
    go_to(page, "p", start + 1)
    go_to(page, "p", start)
    assert shown_mask(page) == drawn

    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
    page.reload()  # asks first, then keeps the edits: the page reopens on this window, the first not accepted
    page.wait_for_function("document.body.dataset.window")
    assert dialogs == ["beforeunload"]
    assert shown_index(page) == start and shown_mask(page) == drawn

    page.click("#discard")
    page.wait_for_function(f"document.body.dataset.window === '{start}'")
    assert shown_mask(page) == original and page.inner_text("#unsaved") == ""
    page.keyboard.press("c")
    accept_and_wait(page, "a")
    assert page.evaluate("sessionStorage.length") == 0
    page.reload()
    page.wait_for_function("document.body.dataset.window")
    assert dialogs == ["beforeunload"]  # nothing unsaved: no question


def test_two_tabs_on_one_window_cannot_overwrite_each_other_silently(browser, server, dataset):
    first, second = open_page(browser, server), open_page(browser, server)
    try:
        start = shown_index(first)
        assert shown_index(second) == start
        window = shown_window(first, server)
        for page, box in ((first, [(5, 5), (30, 40)]), (second, [(60, 70), (100, 90)])):
            page.keyboard.press("c")
            page.keyboard.press("r")
            stroke(page, box)
        mine, theirs = shown_mask(first), shown_mask(second)
        accept_and_wait(second, "a")
        first.keyboard.press("a")
        first.wait_for_function("document.getElementById('status').textContent.startsWith('not saved') || "
                                f"document.body.dataset.window !== '{start}'")
        _, saved_mask = saved(dataset, window)
        assert "".join("1" if v else "0" for v in saved_mask.ravel()) == theirs  # not overwritten
        assert shown_index(first) == start and shown_mask(first) == mine  # nor lost
        assert "saved by tester" in first.inner_text("#conflict") and "version 1" in first.inner_text("#conflict")
        first.click("#conflict-overwrite")
        first.wait_for_function(f"document.body.dataset.window === '{start + 1}'")
        _, saved_mask = saved(dataset, window)
        assert "".join("1" if v else "0" for v in saved_mask.ravel()) == mine
        assert get_json(f"{server}api/windows/{start}")["version"] == 2

        second.keyboard.press("c")  # both tabs are on the next window: this time the first tab takes the other's
        accept_and_wait(second, "a")
        first.keyboard.press("r")
        stroke(first, [(5, 5), (30, 40)])
        first.keyboard.press("a")
        first.wait_for_selector("#conflict:not([hidden])")
        first.click("#conflict-reload")  # hides the conflict at once, then reloads the window
        first.wait_for_function(f"document.body.dataset.window === '{start + 1}'")
        assert first.is_hidden("#conflict")
        assert shown_mask(first) == "0" * ORIGIN.height * ORIGIN.width and first.inner_text("#unsaved") == ""
    finally:
        first.close()
        second.close()


def test_sensitivity_readout_always_names_the_candidate_the_mask_comes_from(page, server):
    start = shown_index(page)
    window = shown_window(page, server)
    assert page.inner_text("#sensitivity-value") == "0.70" and window["mask_origin"] == "candidate"
    page.evaluate("""(() => { const s = document.getElementById('sensitivity'); s.value = '0.3';
                              s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change')); })()""")
    page.wait_for_function("document.getElementById('sensitivity-value').textContent === '0.30'")
    go_to(page, "s", start + 1)  # the next window's mask is the server's candidate at the default sensitivity
    assert page.inner_text("#sensitivity-value") == "0.70" and page.input_value("#sensitivity") == "0.7"
    assert shown_mask(page) == shown_window(page, server)["mask"]
    go_to(page, "p", start)  # back to the window whose mask is the candidate at 0.30
    assert page.inner_text("#sensitivity-value") == "0.30" and page.input_value("#sensitivity") == "0.3"
    page.keyboard.press("z")
    assert page.inner_text("#sensitivity-value") == "0.70" and shown_mask(page) == window["mask"]
    page.keyboard.press("c")  # an empty mask is no candidate at any sensitivity
    assert page.inner_text("#sensitivity-value") == "—"


def test_keys_act_on_a_focused_control_and_not_on_the_page(page):
    start = shown_index(page)
    page.focus("#sensitivity")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('sensitivity-value').textContent === '0.75'")
    page.focus("#slowdown")
    page.keyboard.press("ArrowDown")
    assert page.input_value("#slowdown") == "20"
    page.wait_for_timeout(300)
    assert shown_index(page) == start and page.evaluate("document.activeElement.id") == "slowdown"
    page.click("#zoom-in")  # a control used with the mouse gives the keys back to the page
    zoom = page.evaluate("annotator.state.zoom")
    page.keyboard.press("-")
    assert page.evaluate("annotator.state.zoom") < zoom


def test_cursor_readout_names_time_and_frequency_and_axes_stay_in_view_when_zoomed(page, server):
    session, window = get_json(f"{server}api/session"), shown_window(page, server)
    for _ in range(6):
        page.keyboard.press("+")
    page.evaluate("""(() => { const s = document.getElementById('stage');
                              s.scrollLeft = s.scrollWidth / 2; s.scrollTop = s.scrollHeight / 2; })()""")
    column, row = 70, 66  # (70.5 / 128) * 0.25 s is no tie for rounding to 3 decimals
    at = page.evaluate(f"annotator.gridToClient({column}, {row})")
    page.mouse.move(at["x"], at["y"])
    seconds = (column + 0.5) / session["width"] * window["duration_s"]
    assert page.inner_text("#readout") == f"{seconds:.3f} s · {session['row_frequencies_khz'][row]:.1f} kHz"

    seen = page.evaluate("""(() => {
        const stage = document.getElementById('stage'), box = stage.getBoundingClientRect();
        const at = (x, y) => document.elementFromPoint(x, y).id;
        return { left: at(box.left + 10, box.top + stage.clientHeight / 2),
                 bottom: at(box.left + stage.clientWidth / 2, box.top + stage.clientHeight - 10),
                 scrolled: stage.scrollTop > 0 && stage.scrollLeft > 0 }; })()""")
    assert seen == {"left": "frequency-axis", "bottom": "time-axis", "scrolled": True}
    rows_aligned = page.evaluate("""document.getElementById('frequency-axis').getBoundingClientRect().top ===
                                    document.getElementById('view').getBoundingClientRect().top""")
    columns_aligned = page.evaluate("""document.getElementById('time-axis').getBoundingClientRect().left ===
                                       document.getElementById('view').getBoundingClientRect().left""")
    assert rows_aligned and columns_aligned


def test_a_folder_the_server_may_not_write_is_a_message_on_the_page_and_the_edits_stay(page, server, dataset):
    if unprivileged() is None:
        pytest.skip("root cannot give up its right to write here (no setpriv)")
    start = shown_index(page)
    window = shown_window(page, server)
    page.keyboard.press("r")
    stroke(page, [(20, 20), (40, 50)])
    drawn = shown_mask(page)
    masks = dataset.parent / "masks" / "origin"
    masks.mkdir(parents=True, exist_ok=True)
    masks.chmod(0o555)
    try:
        page.keyboard.press("a")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('not saved')")
        message = page.inner_text("#status")
        assert str(masks) in message and "Permission denied" in message, message
        assert shown_index(page) == start and shown_mask(page) == drawn
    finally:
        masks.chmod(0o755)
    accept_and_wait(page, "a")
    _, saved_mask = saved(dataset, window)
    assert "".join("1" if v else "0" for v in saved_mask.ravel()) == drawn


def test_a_second_server_on_the_dataset_is_refused_and_names_the_first(server_process, dataset):
    first, address = server_process
    second, output, second_address = start_annotate(dataset, dataset.parent / "cache")
    if second_address is not None:
        stop(second)
    assert second_address is None and second.wait(timeout=20) == 2, output
    assert f"pid {first.pid}" in output and address in output and "Traceback" not in output
    holder = json.loads((dataset.parent / "annotated-origin.server.lock").read_text())
    assert holder["pid"] == first.pid and holder["address"] == address  # it took over the dead server's lock


def test_a_read_only_dataset_folder_is_refused_with_its_reason(tmp_path):
    if unprivileged() is None:
        pytest.skip("root cannot give up its right to write here (no setpriv)")
    folder = tmp_path / "read-only"
    for recording in range(6):
        write_audio(folder / "audio" / f"r{recording}.flac", tone(10_000, 0.25, RATE), RATE)
    manifest = write_rows(folder / "manifest.csv", [[f"audio/r{i}.flac", 0, 0.25, 1, 0, 0, f"r{i}", "s"]
                                                    for i in range(6)])
    folder.chmod(0o555)
    try:
        process, output, address = start_annotate(manifest, tmp_path / "cache")
        if address is not None:
            stop(process)
        assert address is None and process.wait(timeout=20) == 2, output
    finally:
        folder.chmod(0o755)
    assert f"cannot write in {folder}" in output and "Permission denied" in output and "Traceback" not in output


def non_loopback_address() -> str | None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_server_listens_on_loopback_only_and_serves_nothing_outside_its_files(server, dataset):
    port = int(server.rstrip("/").rsplit(":", 1)[1])
    listening = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    local = [fields[1] for fields in listening if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port]
    assert local == [f"0100007F:{port:04X}"]  # 127.0.0.1, and no other listening socket on this port
    address = non_loopback_address()
    if address is not None:
        with pytest.raises(OSError):
            socket.create_connection((address, port), timeout=5).close()

    (dataset.parent / "secret.txt").write_text("not for the browser")
    for path in ("static/../manifest.csv", "static/..%2fmanifest.csv", "static/%2e%2e/%2e%2e/secret.txt",
                 "static/..%2F..%2F..%2Fetc%2Fpasswd", "api/windows/999", "api/windows/-1", "../secret.txt"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server + path, timeout=10)
        assert refused.value.code == 404, path

    before = set((dataset.parent / "masks").rglob("*"))
    for body in ({"mask": "1" * 7, "labels": [0, 0, 0], "base_version": 0},
                 {"mask": "2" * ORIGIN.height * ORIGIN.width, "labels": [0, 0, 0], "base_version": 0},
                 {"mask": "0" * ORIGIN.height * ORIGIN.width, "labels": [0, 5, 0], "base_version": 0}):
        request = urllib.request.Request(f"{server}api/windows/0/accept", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 400
    assert set((dataset.parent / "masks").rglob("*")) == before

    request = urllib.request.Request(f"{server}api/session", headers={"Host": f"rebound.example:{port}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400


def test_a_window_whose_audio_became_unreadable_gets_its_reason(server, dataset):
    """Last in this module: it corrupts a recording."""
    last = get_json(f"{server}api/session")["total"] - 1
    window = get_json(f"{server}api/windows/{last}")
    (dataset.parent / "audio" / window["file"]).write_bytes(b"not audio")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server}api/windows/{last}/audio.wav", timeout=10)
    assert refused.value.code == 422
    detail = json.load(refused.value)["detail"]
    assert f"{window['file']}: unreadable or corrupt audio" in detail and "\n" not in detail
