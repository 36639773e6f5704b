"""The playground (app.py): in a real browser (headless Chromium driven by Playwright) it writes songs, compares two
checkpoints, keeps and downloads songs, and shows a message for a bad model or setting; plus the pieces behind it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio", reason="the playground needs Gradio: pip install -e '.[app]'")

from lyric_lm.errors import LyricLMError  # noqa: E402
from lyric_lm.songs import Sampling, generate_songs  # noqa: E402
from lyric_lm.songs.app import (  # noqa: E402
    Models,
    PageProgress,
    Playground,
    Server,
    SideBySide,
    best_checkpoint,
    check_keep_file,
    keep_song,
    kept_songs,
    measure_form,
    model_choices,
    write_songs,
)
from lyric_lm.songs.form import is_lyric_line  # noqa: E402
from lyric_lm.songs.form_sampling import Form  # noqa: E402
from tests.conftest import ROOT, TINY, compose_train, run_env, run_script, write_corpus  # noqa: E402

PROMPT = "Down by the river"
# Where a screenshot of the page also goes, for the README: LYRIC_LM_SCREENSHOT=docs/app.png python -m pytest ...
SCREENSHOT_VARIABLE = "LYRIC_LM_SCREENSHOT"


@pytest.fixture(scope="module")
def app_run(tmp_path_factory) -> Path:
    """A tiny run with two validations and every checkpoint kept (step 6, step 12 the best, last.ckpt).

    A high learning rate, so a few steps make the checkpoints write differently (the corpus' words, not GPT-2's).
    """
    from lyric_lm.pipeline import train

    root = tmp_path_factory.mktemp("app_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        mp.setenv("HF_HOME", str(root / "hf_home"))
        settings = ["trainer.max_steps=12", "trainer.val_check_interval=6", "trainer.limit_val_batches=1"]
        settings += ["callbacks.checkpoint.save_top_k=-1", "optim.lr=1e-2", f"data.path={write_corpus(root / 's.txt')}"]
        train(compose_train(*TINY, *settings, output_dir=root / "run"))
    return root / "run"


def val_loss_of(ckpt: Path) -> float:
    return float(ckpt.stem.split("val_loss")[1])


def test_best_checkpoint_is_the_lowest_val_loss_and_survives_a_moved_run(app_run, tmp_path):
    steps = sorted((app_run / "checkpoints").glob("step*.ckpt"))
    assert len(steps) == 2
    assert best_checkpoint(app_run) == min(steps, key=val_loss_of)
    moved = tmp_path / "moved"
    shutil.copytree(app_run / "checkpoints", moved / "checkpoints")  # best_model_path inside names the old place
    assert best_checkpoint(moved) == moved / "checkpoints" / min(steps, key=val_loss_of).name
    (moved / "checkpoints" / min(steps, key=val_loss_of).name).unlink()
    assert best_checkpoint(moved) == moved / "checkpoints" / "last.ckpt"  # the best one deleted: last.ckpt


def test_model_lists_of_a_run_a_checkpoint_and_a_sweep(app_run, tmp_path):
    best = best_checkpoint(app_run)
    run = model_choices(str(app_run), None, None)
    assert run[0].value == str(best)
    assert run[0].label.endswith("(best)")
    assert {c.value for c in run} == {str(p) for p in (app_run / "checkpoints").glob("*.ckpt")} | {
        str(app_run / "hf_model")
    }
    early = min((app_run / "checkpoints").glob("step*.ckpt"))
    one = model_choices(None, str(early), None)
    assert one[0].value == str(early)  # the one asked for first, its run's others after it
    assert str(best) in [c.value for c in one]
    sweep = tmp_path / "sweep"
    for job, loss in (("0", 9.0), ("1", 5.0)):  # job 1 has the lower val_loss: listed first
        (sweep / job).mkdir(parents=True)
        (sweep / job / "checkpoints").symlink_to(app_run / "checkpoints")
        (sweep / job / "result.json").write_text(json.dumps({"val_loss": loss, "overrides": [f"seed={job}"]}))
    jobs = model_choices(str(sweep), None, None)
    assert jobs[0].label.startswith("job 1 (seed=1): ")
    assert any(c.label.startswith("job 0 (seed=0): ") for c in jobs)
    with pytest.raises(LyricLMError, match="holds no checkpoints"):
        model_choices(str(tmp_path / "sweep" / "0" / "checkpoints"), None, None)
    with pytest.raises(LyricLMError, match="give one of run_dir"):
        model_choices(str(app_run), str(best), None)


def test_streamed_songs_are_the_songs_generate_writes(app_run):
    """The page's songs are generate.py's (the same seed gives the same songs), and what streams is what is saved."""
    import threading

    loaded = Models().get(str(app_run))
    sampling = Sampling(num_samples=2, max_new_tokens=40, seed=3)
    header = {"title": "Night Train", "artist": None, "genre": None}
    expected = generate_songs(loaded.model, loaded.tokenizer, [PROMPT], sampling, header)
    *streamed, (texts, records) = list(write_songs(loaded, PROMPT, header, sampling, threading.Event()))
    assert texts == [PROMPT + r["completion"] for r in expected]
    assert [r["text"] for r in records] == [r["text"] for r in expected]
    for partial, _ in streamed:  # each snapshot is a beginning of the finished song
        assert all(final.startswith(p) for p, final in zip(partial, texts, strict=False))
    collector = SideBySide(loaded.tokenizer, threading.Event())
    generate_songs(loaded.model, loaded.tokenizer, [PROMPT], sampling, header, PageProgress(collector))
    assert collector.texts() == [r["completion"] for r in expected]
    stopped = threading.Event()
    stopped.set()  # the page's Stop: no songs, no error
    assert all(records is None for _, records in write_songs(loaded, PROMPT, header, sampling, stopped))


def test_songs_in_form_stream_line_by_line_and_are_the_songs_generate_writes(app_run):
    """With the form controls set, the page writes generate.py's songs in that form (same seed, same songs), a line
    at a time, and its Stop ends them at the next line."""
    import threading

    loaded = Models().get(str(app_run))
    sampling = Sampling(num_samples=2, seed=5)
    form = Form(rhyme_scheme="AA", syllables=6, stanzas=2, candidates=4)
    header = {"title": None, "artist": None, "genre": None}
    expected = generate_songs(loaded.model, loaded.tokenizer, [PROMPT], sampling, header, form=form)
    *streamed, (texts, records) = list(write_songs(loaded, PROMPT, header, sampling, threading.Event(), form))
    assert texts == [PROMPT + r["completion"] for r in expected]
    assert [r["form_measured"] for r in records] == [r["form_measured"] for r in expected]
    assert all(r["form"]["rhyme_scheme"] == "AA" for r in records)
    for partial, _ in streamed:  # each snapshot is a beginning of its finished song, the second begun after the first
        assert all(final.startswith(p) for p, final in zip(partial, texts, strict=False))
    assert any(len(partial) == 1 for partial, _ in streamed)
    stopped = threading.Event()
    stopped.set()
    assert all(records is None for _, records in write_songs(loaded, PROMPT, header, sampling, stopped, form))


def test_the_pages_form_boxes_become_generates_form_settings():
    play = Playground([], Models(), Path("kept.jsonl"), Sampling(), {}, Form(candidates=8))
    page = (0.9, 50, 0.95, 64, 1, 2)  # temperature, top_k, top_p, max_new_tokens, seed, num_samples
    sampling, form = play.page_settings(*page, "AABB", 8.0, None, None, "verse, chorus verse")
    assert sampling.num_samples == 2
    assert form == Form(rhyme_scheme="AABB", syllables=8, structure=("verse", "chorus", "verse"), candidates=8)
    assert not play.page_settings(*page, "", None, 1.0, None, " ")[1].active  # empty boxes: a free song
    assert not play.page_settings(*page, "", 0.0, 1.0, 0.0, "")[1].active  # number boxes show empty as 0
    with pytest.raises(LyricLMError, match="rhyme_scheme=aabb: write it in capital letters"):
        play.page_settings(*page, "aabb", None, 1, None, "")
    with pytest.raises(LyricLMError, match="'hook' is not a song part"):
        play.page_settings(*page, "", None, 1, None, "verse, hook")


def test_kept_songs_are_appended(tmp_path):
    path = tmp_path / "new" / "kept.jsonl"
    check_keep_file(path)
    assert keep_song({"prompt": "a", "completion": " b"}, "m1.ckpt", path) == 1
    assert keep_song({"prompt": "c", "completion": " d"}, "m2.ckpt", path) == 2
    assert [(s["model"], s["prompt"]) for s in kept_songs(path)] == [("m1.ckpt", "a"), ("m2.ckpt", "c")]
    with pytest.raises(LyricLMError, match="is a folder"):
        check_keep_file(tmp_path)


def test_the_form_of_a_song_by_stanza():
    form = measure_form("Down by the river in the night\nI saw the light\nthe road goes on\n\n[Chorus]\nfire\nliar\n")
    assert [s["rhyme_scheme"] for s in form["stanzas"]] == ["AAB", "AA"]
    assert form["stanzas"][0]["syllables"] == [8, 4, 4]
    assert form["lines"] == 5


@pytest.mark.parametrize(
    ("settings", "error"),
    [({"port": 0}, "port=0 is not a port"), ({"port": "80a"}, "port=80a is not"), ({"share": "yes"}, "share=yes is")],
)
def test_bad_server_settings_are_named(settings, error):
    with pytest.raises(LyricLMError, match=error):
        Server(**settings)


def test_a_bad_model_is_named_once_loaded(tmp_path):
    with pytest.raises(LyricLMError, match="not a Hugging Face model directory"):
        Models().get(str(tmp_path / "missing"))
    with pytest.raises(LyricLMError, match="holds no model"):
        Models().get(str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(LyricLMError, match="could not be loaded as a model"):
        Models().get(str(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["run_dir=/no/such/run"], "error: run_dir=/no/such/run is not a folder"),
        (["ckpt_path=app.py"], "error: checkpoint app.py is truncated or not a PyTorch checkpoint"),
    ],
)
def test_cli_refuses_a_bad_start_in_one_line(args, error):
    proc = run_script(ROOT / "app.py", *args, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()]  # one line, no traceback
    assert proc.stderr.startswith(error)


@pytest.mark.slow
def test_cli_without_gradio_says_how_to_install_it():
    hide_gradio = "import runpy, sys; sys.modules['gradio'] = None; sys.argv = ['app.py', 'model_dir=gpt2']"
    code = f"{hide_gradio}; runpy.run_path('app.py', run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=run_env(), capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr == "error: the playground needs Gradio; install it with: pip install -e '.[app]'\n"


@pytest.fixture(scope="module")
def chromium():
    """(Playwright's sync API, Debian's Chromium or the browser named by LYRIC_LM_CHROMIUM), or a skip that says what
    to install. Module-scoped and asked for first, so a machine without them skips before anything is trained."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs Playwright (the dev extra)")
    names = [os.environ.get("LYRIC_LM_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"]
    path = next((shutil.which(n) for n in names if n and shutil.which(n)), None)
    if path is None:
        pytest.skip("no Chromium: apt-get install chromium (or set LYRIC_LM_CHROMIUM to a Chromium/Chrome binary)")
    return sync_api, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def app_url(app_run, tmp_path):
    """`python app.py run_dir=<run>` on a free port, as a user starts it; its URL while the test runs."""
    port = free_port()
    log = tmp_path / "app.log"
    args = [f"run_dir={app_run}", f"port={port}", f"keep_file={tmp_path / 'kept.jsonl'}"]
    args += ["max_new_tokens=48", "min_new_tokens=48"]  # songs of 48 tokens: the toy model often ends one at once
    env = {**run_env(), "OMP_NUM_THREADS": "1"}  # the toy model gains nothing from a second thread
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), *args], cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 180
        while "lyric_lm playground on" not in log.read_text():
            assert proc.poll() is None, f"app.py ended:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"app.py did not start in 180 s:\n{log.read_text()}"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_shown(page, log: Path, where: str, text: str, timeout_ms: int = 60_000) -> None:
    """Wait until `where` shows `text`; if it does not, fail saying what the page's status and `where` show, and the
    end of app.py's output (`log`)."""
    try:
        page.wait_for_selector(f"{where} >> text={text}", timeout=timeout_ms)
    except Exception as err:  # Playwright's TimeoutError: say what the page and the server show instead
        server = log.read_text()[-3000:] if log.is_file() else ""
        raise AssertionError(
            f"{where} did not show {text!r} in {timeout_ms / 1000:.0f} s; status: {page.inner_text('#status')!r}; "
            f"{where}: {page.inner_text(where)!r}; app.py's output ends:\n{server}"
        ) from err


def wait_written(page, panel: str) -> str:
    """Wait until a song panel's Keep button is enabled (its song is finished); its text."""
    page.wait_for_function(f"() => !document.querySelector('#{panel}-keep').disabled", timeout=60_000)
    return page.input_value(f"#{panel}-text textarea")


@pytest.mark.slow
def test_the_page_in_a_real_browser(chromium, app_run, app_url, tmp_path):
    sync_api, browser_path = chromium
    # Chromium refuses its sandbox to root (CI containers); /dev/shm is small in containers.
    args = ["--disable-dev-shm-usage", *(["--no-sandbox"] if os.geteuid() == 0 else [])]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        log = tmp_path / "app.log"  # app.py's output (the app_url fixture), for wait_shown's message
        hosts = set()
        page.on("request", lambda request: hosts.add(request.url.split("/")[2]))
        page.goto(app_url)

        # Write: two songs side by side, each with its form, the third and fourth panels hidden.
        page.fill("#prompt textarea", PROMPT)
        page.fill("#genre textarea", "folk")
        page.click("#write-button")
        songs = [wait_written(page, f"song-{i}") for i in range(2)]
        assert all(song.startswith(PROMPT) and len(song) > len(PROMPT) for song in songs)
        assert not page.is_visible("#song-2-text")
        assert "Written by" in page.inner_text("#status")
        assert all("rhyme scheme" in page.inner_text(f"#song-{i}-form") for i in range(2))  # the form under each
        page.screenshot(path=tmp_path / "app.png", full_page=True)

        # Keep both, then download the kept songs.
        for i in range(2):
            page.click(f"#song-{i}-keep")
            wait_shown(page, log, "#status", f"Kept song {i + 1}")
        page.get_by_role("tab", name="Kept songs").click()
        with page.expect_download() as download:
            page.click("#download")
        kept = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
        assert [k["prompt"] + k["completion"] for k in kept] == songs
        assert kept[0]["model"] == str(best_checkpoint(app_run))
        assert kept[0]["header"] == {"genre": "folk"}
        assert kept[0]["form_measured"] == measure_form(songs[0])
        assert "form" not in kept[0]  # a free song: no form asked

        # The form controls: two stanzas of a rhyming couplet of about 6 syllables, the form asked under each song.
        page.get_by_role("tab", name="Write").click()
        page.fill("#rhyme_scheme textarea", "AA")
        page.fill("#syllables input", "6")
        page.fill("#stanzas input", "2")
        page.press("#stanzas input", "Tab")  # as a user leaves the box
        page.click("#write-button")
        # The songs shown before stay until the new ones come: wait for the form asked, which only these show.
        for i in range(2):
            wait_shown(page, log, f"#song-{i}-form", "Asked AA, 6 ± 1 syllables, 2 stanzas: ", timeout_ms=120_000)
        in_form = [wait_written(page, f"song-{i}") for i in range(2)]
        assert all(sum(map(is_lyric_line, song.splitlines())) == 4 for song in in_form)
        if os.environ.get(SCREENSHOT_VARIABLE):  # the README's: songs in form, the form asked and kept under each
            page.screenshot(path=ROOT / os.environ[SCREENSHOT_VARIABLE], full_page=True)
        page.fill("#rhyme_scheme textarea", "ab")
        page.click("#write-button")
        wait_shown(page, log, "#status", "write it in capital letters")
        page.fill("#rhyme_scheme textarea", "")  # free songs again: no scheme, any syllables, the default stanzas
        page.fill("#syllables input", "0")
        page.fill("#stanzas input", "0")

        # Side by side: the earliest checkpoint against the best, same prompt and seed. B is the best checkpoint,
        # so its songs are the ones the Write tab wrote.
        page.get_by_role("tab", name="Side by side").click()
        assert page.input_value("#model-a input").startswith("step000006-")
        assert page.input_value("#model-b input").endswith("(best)")
        page.click("#compare-button")
        a = [wait_written(page, f"a-{i}") for i in range(2)]
        b = [wait_written(page, f"b-{i}") for i in range(2)]
        assert b == songs
        assert all(song.startswith(PROMPT) for song in a)
        assert a != b  # 6 steps less training writes other songs from the same seed

        # Bad input: a path that is not a model, a value out of range; a message each, and the server goes on.
        page.get_by_role("tab", name="Write").click()
        page.fill("#model input", str(tmp_path / "not_a_model"))
        page.press("#model input", "Enter")
        page.click("#write-button")
        wait_shown(page, log, "#status", "Cannot do that")
        assert "not_a_model is not a Hugging Face model directory" in page.inner_text("#status")
        assert page.input_value("#song-0-text textarea") == in_form[0]  # the songs shown stay
        page.fill("#model input", str(app_run))  # a run folder: its best checkpoint
        page.press("#model input", "Enter")
        page.fill("#top_k input", "-1")
        page.click("#write-button")
        wait_shown(page, log, "#status", "top_k=-1 is out of range")
        page.fill("#top_k input", "50")
        page.click("#write-button")
        wait_shown(page, log, "#status", "Written by")
        assert wait_written(page, "song-0") == songs[0]

        assert hosts == {f"127.0.0.1:{app_url.split(':')[2].rstrip('/')}"}  # no request leaves the machine
        browser.close()
