"""Lyric metrics on hand-made songs, and evaluate.py on a tiny run: metrics.json, report.md, TensorBoard."""

import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm.data import LyricsDataModule
from lyric_lm.data.reading import parse_songs
from lyric_lm.errors import LyricLMError, exit_on_user_error
from lyric_lm.module import LyricLM
from lyric_lm.songs.evaluation import (
    FORM_ROWS,
    distinct_n,
    evaluate,
    line_stats,
    memorisation,
    repeated_line_rate,
)
from lyric_lm.songs.form import form_metrics
from lyric_lm.songs.loading import run_config_of
from lyric_lm.tokenizer import load_tokenizer
from tests.conftest import ROOT, run_env, run_script

FORM_KEYS = tuple(form_metrics([]))
SHORT = {"max_new_tokens": 16, "seed": 0}

SONG = """genre: folk

[Verse 1]
The lamp is low, the night is long
I hum along a tired song
My boots are wet from the river stone
I walk the road that leads me home

[Chorus]
Carry me home, carry me home
Carry me home, carry me home"""


def test_distinct_n_counts_unique_ngrams():
    assert distinct_n(["a b a b"], 1) == 2 / 4
    assert distinct_n(["a b a b"], 2) == 2 / 3  # "a b", "b a", "a b"
    assert distinct_n(["one two", "three four"], 1) == 1.0
    assert distinct_n([""], 2) == 0.0


def test_repeated_lines_and_shape_ignore_tags_and_headers():
    # 6 lyric lines; the chorus's second line repeats its first (punctuation and case ignored).
    assert repeated_line_rate([SONG]) == 1 / 6
    assert repeated_line_rate(["a\nb\n\nA!\nc"]) == 1 / 4
    stats = line_stats([SONG])
    assert stats["mean_stanza_lines"] == 6 / 2
    assert stats["mean_line_words"] == (8 + 6 + 8 + 8 + 6 + 6) / 6


def test_words_are_form_words_unicode_and_apostrophes_kept():
    # form.py's words: "Don’t" is one word, its curly apostrophe straightened; "café" one word, its accent dropped.
    assert distinct_n(["Don’t stop, café!\ndon't"], 1) == 3 / 4
    assert repeated_line_rate(["Don’t stop at the café\ndon't stop at the cafe"]) == 1 / 2


def test_memorisation_share_and_longest_copied_span():
    training = ["the river keeps the secrets of the town below the hill", "a second song about the sea"]
    copied = "the river keeps the secrets of the town below"  # 9 words from song one: 2 of its 8-grams
    result = memorisation([copied + " and then something new entirely"], training, n=8)
    assert result["generated_ngrams"] == 14 - 8 + 1  # 9 copied + 5 new words
    assert result["ngram_share"] == 2 / 7
    assert result["longest_copied_words"] == 9
    assert result["longest_copied"] == copied
    # Words that meet only across two training songs are not a copied span.
    across = memorisation(["below the hill a second song"], training, n=8)
    assert across["longest_copied_words"] == 3
    assert memorisation(["nothing here"], training)["ngram_share"] == 0.0


def test_evaluate_writes_metrics_report_and_tensorboard(tiny_run, tmp_path, capsys):
    cfg = {"ckpt_path": str(tiny_run / "checkpoints" / "last.ckpt"), "output_dir": str(tmp_path / "eval")}
    evaluate({**cfg, "prompt": "", "num_samples": 3, "max_new_tokens": 24, "seed": 0, "ngram": 8})
    shown = capsys.readouterr()
    phases = [line.split(" ")[0] for line in shown.err.splitlines()]  # one line as each phase starts
    assert phases == ["loaded", "reading", "perplexity", "sampling", "memorisation", "song", "writing"]
    assert f"writing the report to {tmp_path / 'eval'}\n" in shown.err
    assert "sampling 3 songs\n" in shown.err
    assert f"wrote {tmp_path / 'eval' / 'metrics.json'}, report.md, samples.jsonl and tensorboard/\n" in shown.out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    form = metrics["form"]
    # The headline figures end the output, the end-rhyme rate of the songs beside that of the real ones.
    assert shown.out.splitlines()[-1].startswith(("val ppl ", "test ppl "))
    assert shown.out.splitlines()[-1].endswith(
        f"| end-rhyme rate {form['generated']['end_rhyme_rate']:.3f} generated "
        f"vs {form['held_out']['end_rhyme_rate']:.3f} real"
    )
    assert metrics["eval_split"] in ("test", "val")
    assert metrics["perplexity"]["ppl"] > 1
    assert metrics["perplexity"]["tokens"] > 0
    gen = metrics["generation"]
    assert gen["songs"] == 3
    for key in ("distinct_1", "distinct_2", "repeated_line_rate", "mean_line_words"):
        assert 0 <= gen[key] <= max(1, gen[key])
    assert 0 <= gen["memorisation"]["ngram_share"] <= 1
    assert "longest_copied_words" in gen["memorisation"]
    assert set(form) == {"generated", "held_out"}
    assert set(form["generated"]) == set(form["held_out"]) == set(FORM_KEYS)
    samples = (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()
    assert form["generated"] == form_metrics(json.loads(r)["text"] for r in samples)
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| distinct-1 / distinct-2 |" in report
    assert "| form | generated | held-out real |" in report
    assert report.split("\n## Samples")[0] in shown.out  # the tables are printed too
    assert len((tmp_path / "eval" / "samples.jsonl").read_text().splitlines()) == 3
    events = EventAccumulator(str(tmp_path / "eval" / "tensorboard"))
    events.Reload()
    assert {"eval/distinct_1", "eval/memorised_ngram_share", f"eval/{metrics['eval_split']}_ppl"} <= set(
        events.Tags()["scalars"]
    )
    assert {f"eval/form_{songs}/{key}" for songs in form for key in FORM_KEYS} <= set(events.Tags()["scalars"])


def test_form_table_has_both_columns_and_the_real_one_is_the_held_out_songs(tiny_run, tmp_path):
    """The held-out real column is form_metrics of the songs of the split perplexity is measured on."""
    ckpt = tiny_run / "checkpoints" / "last.ckpt"
    metrics = evaluate({"ckpt_path": str(ckpt), "output_dir": str(tmp_path / "eval"), "num_samples": 2, **SHORT})
    module = LyricLM.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    model_cfg = module.hparams["model"]
    data = LyricsDataModule(load_tokenizer(model_cfg["name_or_path"]), **run_config_of(ckpt)["data"])
    held_out = list(data.song_texts(metrics["eval_split"])["text"])
    assert metrics["form"]["held_out"] == form_metrics(held_out)
    assert metrics["form"]["held_out"]["songs"] == len(held_out) > 0
    table = table_of((tmp_path / "eval" / "report.md").read_text())
    assert table["form"] == ["generated", "held-out real"]
    real = metrics["form"]["held_out"]
    assert table["songs / lines"][1] == f"{real['songs']} / {real['lines']}"
    assert table["end-rhyme rate"][1] == f"{real['end_rhyme_rate']:.3f}"
    assert table["syllables per line (mean ± sd)"][1] == (
        f"{real['syllables_per_line_mean']:.1f} ± {real['syllables_per_line_std']:.1f}"
    )
    assert list(table) == ["form", *FORM_ROWS]


def test_bad_output_dir_or_data_path_is_one_line(tiny_run, tmp_path):
    cfg = {"ckpt_path": str(tiny_run / "checkpoints" / "last.ckpt"), "num_samples": 1, "max_new_tokens": 4}
    (tmp_path / "eval").write_text("a file")
    with pytest.raises(LyricLMError, match=f"^output_dir={tmp_path / 'eval'} is a file; give a folder"):
        evaluate({**cfg, "output_dir": str(tmp_path / "eval")})
    with pytest.raises(LyricLMError, match=f"^data_path={tmp_path / 'none.txt'} does not exist"):
        evaluate({**cfg, "output_dir": str(tmp_path / "out"), "data_path": str(tmp_path / "none.txt")})
    assert not (tmp_path / "out").exists()
    # A folder of the user's is not written into: evaluate would put its report.md beside (or over) theirs.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "report.md").write_text("my own report")
    (tmp_path / "mine" / "notes.txt").write_text("my notes")
    with pytest.raises(LyricLMError, match=r"holds files evaluate did not write \(notes.txt\); give a new or empty"):
        evaluate({**cfg, "output_dir": str(tmp_path / "mine")})
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt", "report.md"]
    assert (tmp_path / "mine" / "report.md").read_text() == "my own report"


# ---- songs_file=: any lyrics, no model ----------------------------------------------------------------------------

AABB_SONG = """title: Couplets

The night was long and cold and still
I walked alone across the hill
The morning came with golden light
And chased away the endless night

[Chorus]
Carry me home across the bay
Carry me home at break of day

The river runs beneath the stone
I hum a tune I call my own
A heron waits beside the reed
And takes no more than what I need

[Chorus]
Carry me home across the bay
Carry me home at break of day"""  # two AABB stanzas and a chorus that comes back
ABAB_SONG = """I saw the moon above the sea
A silver road of light
It sang a quiet song to me
And stayed with me all night"""
FREE_VERSE = """Tables and chairs in the kitchen
A letter I never sent
The bus is late again today
Nobody answers the phone"""


def table_of(markdown: str) -> dict[str, list[str]]:
    """The Form table of a report: row label -> its cells (the header row under "form")."""
    rows = [ln for ln in markdown[markdown.index("| form |") :].splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows if not ln.startswith("|---")]
    return {row[0]: row[1:] for row in cells}


def test_songs_file_txt_one_couplet_song(tmp_path, capsys):
    songs = tmp_path / "draft.txt"
    songs.write_text(AABB_SONG)  # no === line: one song
    metrics = evaluate({"songs_file": str(songs)})
    form = metrics["form"]["songs_file"]
    assert (form["songs"], form["lines"], form["stanza_groups"]) == (1, 12, 2)
    assert form["scheme_aabb"] == 1.0
    assert form["end_rhyme_rate"] == 1.0
    assert form["near_rhyme_rate"] == 0.0
    assert form["repeated_chorus_share"] == 1.0
    assert form["syllables_per_line_mean"] == 8.0  # iambic tetrameter throughout
    assert set(metrics) == {"songs_file", "data_path", "lyrics", "form"}
    assert "memorisation" not in metrics["lyrics"]  # nothing to copy from without data_path=
    out = tmp_path / "draft_eval"  # beside the songs file
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.md"]
    assert json.loads((out / "metrics.json").read_text()) == metrics
    shown = capsys.readouterr()
    assert shown.err.splitlines()[0] == f"read 1 song from {songs}"
    table = table_of(shown.out)  # the Form table and the lyric metrics on stdout
    assert table["form"] == ["songs file"]
    assert table["AABB stanzas (couplets)"] == ["1.000"]
    assert "| distinct-1 / distinct-2 |" in shown.out
    distinct_2 = metrics["lyrics"]["distinct_2"]
    assert shown.out.splitlines()[-1] == f"1 song | distinct-2 {distinct_2:.3f} | end-rhyme rate 1.000"
    # A second scoring writes over the first's folder: evaluate wrote it.
    songs.write_text(FREE_VERSE)
    assert evaluate({"songs_file": str(songs)})["form"]["songs_file"]["scheme_other"] == 1.0
    assert json.loads((out / "metrics.json").read_text())["form"]["songs_file"]["end_rhyme_rate"] == 0.0


def test_songs_file_txt_several_songs_and_jsonl_of_generate(tmp_path):
    txt = tmp_path / "songs.txt"
    txt.write_text(f"{AABB_SONG}\n===\n{ABAB_SONG}\n===\n{FREE_VERSE}\n", encoding="utf-8")
    form = evaluate({"songs_file": str(txt)})["form"]["songs_file"]
    assert (form["songs"], form["stanza_groups"]) == (3, 4)
    assert (form["scheme_aabb"], form["scheme_abab"], form["scheme_other"]) == (2 / 4, 1 / 4, 1 / 4)
    assert form["end_rhyme_rate"] == (12 + 4) / 20  # every line of the two rhymed songs, none of the free verse
    assert form["repeated_chorus_share"] == 1 / 3
    # generate.py's output_file= records (prompt, text, completion, settings), a "lyrics" record and a blank line.
    records = [
        {"prompt": "I saw the moon", "text": ABAB_SONG, "completion": ABAB_SONG[14:], "temperature": 1.0},
        {"lyrics": AABB_SONG},
        {"text": FREE_VERSE},
    ]
    jsonl = tmp_path / "songs.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in records) + "\n\n", encoding="utf-8")
    metrics = evaluate({"songs_file": str(jsonl), "output_dir": str(tmp_path / "out")})
    assert metrics["form"]["songs_file"] == form  # the same songs, the same form
    assert metrics["lyrics"]["songs"] == 3
    assert (tmp_path / "out" / "report.md").is_file()


def test_songs_file_with_data_path_puts_real_songs_beside_and_finds_copies(tmp_path, corpus):
    real = [s["text"] for s in parse_songs(corpus.read_text())]
    songs = tmp_path / "mine.jsonl"
    songs.write_text(json.dumps({"text": real[0]}) + "\n" + json.dumps({"text": ABAB_SONG}) + "\n")
    metrics = evaluate({"songs_file": str(songs), "data_path": str(corpus), "ngram": 4})
    assert metrics["form"]["data_path"] == form_metrics(real)
    mem = metrics["lyrics"]["memorisation"]
    assert mem["ngram_n"] == 4
    assert mem["longest_copied_words"] == len(real[0].split())  # the copied song, every word of it
    assert 0.5 < mem["ngram_share"] < 1  # the copy, not the ABAB song
    report = (tmp_path / "mine_eval" / "report.md").read_text()
    assert table_of(report)["form"] == ["songs file", "data_path songs"]
    assert "| 4-grams found in data_path songs |" in report


@pytest.mark.parametrize(
    ("name", "content", "extra", "message"),
    [
        ("none.txt", None, {}, "songs_file={f} does not exist; give a .jsonl file"),
        ("empty.txt", "\n===\n\n", {}, "songs_file={f} holds no lyrics; give a .jsonl file"),
        ("empty.jsonl", "", {}, "songs_file={f} holds no lyrics"),
        ("bad.jsonl", '{"text": "a line"}\n{"text": oops}\n', {}, "songs_file={f} line 2 is not JSON"),
        ("list.jsonl", "[1, 2]\n", {}, "songs_file={f} line 1 is not a JSON object"),
        ("notext.jsonl", '{"title": "Song"}\n', {}, 'songs_file={f} line 1 has no "text" (or "lyrics") string'),
        ("latin1.txt", "café au lait".encode("latin-1"), {}, "songs_file={f} is not UTF-8 text"),
        ("songs.csv", "text\nla la\n", {}, "songs_file={f} is neither .jsonl nor .txt"),
        ("folder", "dir", {}, "songs_file={f} is a folder"),
        ("ok.txt", ABAB_SONG, {"ckpt_path": "last.ckpt"}, "give one of ckpt_path= (evaluate a model) or songs_file="),
        ("ok.txt", ABAB_SONG, {"data_path": "nowhere.txt"}, "data_path=nowhere.txt does not exist"),
        ("ok.txt", ABAB_SONG, {"ngram": 0}, "ngram=0 is out of range"),
        ("ok.txt", ABAB_SONG, {"output_dir": "."}, "output_dir=. holds files evaluate did not write (ok.txt)"),
    ],
)
def test_bad_songs_file_input_is_one_line_exit_2_nothing_written(
    tmp_path, monkeypatch, capsys, name, content, extra, message
):
    monkeypatch.chdir(tmp_path)
    songs = tmp_path / name
    if content == "dir":
        songs.mkdir()
    elif isinstance(content, bytes):
        songs.write_bytes(content)
    elif content is not None:
        songs.write_text(content)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exited:  # as evaluate.py runs it
        exit_on_user_error(lambda: evaluate({"songs_file": str(songs), **extra}))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert err.count("\n") == 1  # one line, no traceback
    assert message.format(f=songs) in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


def test_nothing_to_evaluate_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        exit_on_user_error(lambda: evaluate({"ckpt_path": None, "songs_file": None}))
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "error: nothing to evaluate; set ckpt_path=<run>/checkpoints/last.ckpt to evaluate a model, "
        "or songs_file=<songs.jsonl|songs.txt> to score lyrics without one\n"
    )


@pytest.mark.slow
def test_cli_songs_file_scores_or_refuses_in_one_line(tmp_path):
    (tmp_path / "songs.txt").write_text(f"{AABB_SONG}\n===\n{ABAB_SONG}\n")
    proc = run_script(ROOT / "evaluate.py", "songs_file=songs.txt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert table_of(proc.stdout)["end-rhyme rate"] == ["1.000"]
    assert proc.stdout.splitlines()[-1].endswith("| end-rhyme rate 1.000")
    assert (tmp_path / "songs_eval" / "metrics.json").is_file()
    (tmp_path / "bad.jsonl").write_text("not json\n")
    proc = run_script(ROOT / "evaluate.py", "songs_file=bad.jsonl", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: songs_file=bad.jsonl line 1 is not JSON (Expecting value); each line of a .jsonl songs file is one "
        'JSON object with a "text" field, as generate.py output_file= writes'
    ]
    assert not (tmp_path / "bad_eval").exists()


@pytest.mark.slow
def test_cli_missing_checkpoint_is_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "evaluate.py"), f"ckpt_path={tmp_path / 'none.ckpt'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: checkpoint ")
    assert not (tmp_path / "eval").exists()
