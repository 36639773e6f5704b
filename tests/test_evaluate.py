"""Lyric metrics on hand-made songs, and evaluate.py on a tiny run: metrics.json, report.md, TensorBoard."""

import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm.errors import LyricLMError
from lyric_lm.songs.evaluation import (
    distinct_n,
    end_rhyme_rate,
    evaluate,
    line_stats,
    memorisation,
    repeated_line_rate,
    rhyme_key,
    rhymes,
)
from tests.conftest import ROOT, run_env

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


@pytest.mark.parametrize(
    ("a", "b"), [("night", "light"), ("long", "song"), ("stone", "alone"), ("day", "away"), ("fire", "desire")]
)
def test_rhyme_heuristic_finds_rhymes(a, b):
    assert rhymes(a, b)


@pytest.mark.parametrize(("a", "b"), [("night", "road"), ("home", "home"), ("river", "stone"), ("sky", "")])
def test_rhyme_heuristic_rejects_non_rhymes_and_the_same_word(a, b):
    assert not rhymes(a, b)


def test_end_rhyme_rate_counts_couplets_and_alternating_rhyme():
    assert rhyme_key("Voice!") == rhyme_key("choice") == "oic"
    assert end_rhyme_rate(["long\nsong\nstone\nalone"]) == 2 / 3  # AABB: lines 2 and 4 rhyme
    assert end_rhyme_rate(["night\nroad\nlight\nload"]) == 2 / 3  # ABAB, within the 2-line window
    assert end_rhyme_rate(["river\nstone\nsky\nbread"]) == 0.0
    assert end_rhyme_rate(["one line"]) == 0.0


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
    assert phases == ["loaded", "reading", "perplexity", "sampling", "memorisation", "writing"]
    assert f"writing the report to {tmp_path / 'eval'}\n" in shown.err
    assert "sampling 3 songs\n" in shown.err
    assert f"wrote {tmp_path / 'eval' / 'metrics.json'}, report.md, samples.jsonl and tensorboard/\n" in shown.out
    assert shown.out.splitlines()[-1].startswith(("val ppl ", "test ppl "))  # the headline figures end the output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["eval_split"] in ("test", "val")
    assert metrics["perplexity"]["ppl"] > 1
    assert metrics["perplexity"]["tokens"] > 0
    gen = metrics["generation"]
    assert gen["songs"] == 3
    for key in ("distinct_1", "distinct_2", "repeated_line_rate", "end_rhyme_rate", "mean_line_words"):
        assert 0 <= gen[key] <= max(1, gen[key])
    assert 0 <= gen["memorisation"]["ngram_share"] <= 1
    assert "longest_copied_words" in gen["memorisation"]
    assert "| distinct-1 / distinct-2 |" in (tmp_path / "eval" / "report.md").read_text()
    assert len((tmp_path / "eval" / "samples.jsonl").read_text().splitlines()) == 3
    events = EventAccumulator(str(tmp_path / "eval" / "tensorboard"))
    events.Reload()
    assert {"eval/distinct_1", "eval/memorised_ngram_share", f"eval/{metrics['eval_split']}_ppl"} <= set(
        events.Tags()["scalars"]
    )


def test_bad_output_dir_or_data_path_is_one_line(tiny_run, tmp_path):
    cfg = {"ckpt_path": str(tiny_run / "checkpoints" / "last.ckpt"), "num_samples": 1, "max_new_tokens": 4}
    (tmp_path / "eval").write_text("a file")
    with pytest.raises(LyricLMError, match=f"^output_dir={tmp_path / 'eval'} is a file; give a folder"):
        evaluate({**cfg, "output_dir": str(tmp_path / "eval")})
    with pytest.raises(LyricLMError, match=f"^data_path={tmp_path / 'none.txt'} does not exist"):
        evaluate({**cfg, "output_dir": str(tmp_path / "out"), "data_path": str(tmp_path / "none.txt")})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_missing_checkpoint_is_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "evaluate.py"), f"ckpt_path={tmp_path / 'none.ckpt'}"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: checkpoint ")
    assert not (tmp_path / "eval").exists()
