"""Sampling: settings checked, prompts and headers, same seed same songs, stop at EOS, streaming to a terminal,
generate.py end to end."""

import io
import json
import subprocess
import sys

import pytest
import torch

from lyric_lm.data.conditioning import format_header
from lyric_lm.errors import LyricLMError
from lyric_lm.songs.loading import load_for_generation
from lyric_lm.songs.sampling import Sampling, SongProgress, format_songs, generate_songs, read_prompts, song_prompt
from tests.conftest import ROOT, run_env


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("num_samples", 0),
        ("max_new_tokens", 0),
        ("min_new_tokens", -1),
        ("temperature", 0.0),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("repetition_penalty", 0.0),
        ("no_repeat_ngram_size", -2),
    ],
)
def test_out_of_range_sampling_value_is_named(key, value):
    with pytest.raises(LyricLMError, match=rf"^{key}={value} is out of range; {key} must be"):
        Sampling(**{key: value})


@pytest.mark.parametrize(
    ("key", "value"),
    [("num_samples", 1.5), ("top_k", 2.5), ("max_new_tokens", "abc"), ("seed", "x"), ("temperature", "hot")],
)
def test_a_value_of_the_wrong_type_is_named(key, value):
    with pytest.raises(LyricLMError, match=rf"^{key}={value} is not a (whole )?number; give"):
        Sampling(**{key: value})


def tiny_model(n_positions: int):
    """A 1-layer GPT-2 with a context of `n_positions` tokens, and GPT-2's tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from lyric_lm.tokenizer import load_tokenizer

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=n_positions)
    return GPT2LMHeadModel(config).eval(), load_tokenizer("gpt2", "bundled")


def test_songs_stop_at_the_models_context(capsys):
    model, tok = tiny_model(n_positions=32)
    # min_new_tokens as large: no EOS, so every song runs until the context is full.
    sampling = Sampling(max_new_tokens=1_000_000_000, min_new_tokens=1_000_000_000)
    free, river = generate_songs(model, tok, ["", "Down by the river"], sampling)
    river_tokens = 1 + len(tok("Down by the river")["input_ids"])  # EOS + the prompt: 5 tokens
    assert free["new_tokens"] == free["max_new_tokens"] == 32 - 1
    assert river["new_tokens"] == river["max_new_tokens"] == 32 - river_tokens
    assert not free["ended"]
    assert not river["ended"]
    assert capsys.readouterr().err == (
        f"note: max_new_tokens=1000000000 capped at {32 - river_tokens}-31 (by prompt length): "
        "the model's context is 32 tokens\n"
    )


def test_a_prompt_that_fills_the_context_fails_before_sampling():
    model, tok = tiny_model(n_positions=8)
    with pytest.raises(LyricLMError, match=r"is \d+ tokens with its header, and the model's context is 8 tokens"):
        generate_songs(model, tok, ["", "one two three four five six seven eight"], Sampling(max_new_tokens=4))


def test_prompts_from_values_and_file(tmp_path):
    assert read_prompts() == [""]  # the model starts a song by itself
    assert read_prompts("Down by the river") == ["Down by the river"]
    assert read_prompts("[Chorus]\\nOh") == ["[Chorus]\nOh"]  # as typed on a command line
    path = tmp_path / "prompts.txt"
    path.write_text("First light\n\n[Chorus]\\nOh\n")
    assert read_prompts(["a", "b"], str(path)) == ["a", "b", "First light", "[Chorus]\nOh"]
    path.write_text("\n  \n")
    with pytest.raises(LyricLMError, match="is empty"):
        read_prompts(prompt_file=str(path))
    with pytest.raises(LyricLMError, match="does not exist"):
        read_prompts(prompt_file=str(tmp_path / "none.txt"))


def test_header_uses_the_training_format():
    header = {"genre": "folk", "title": "Paper Boats"}  # in the order the model was trained with
    assert song_prompt("We folded", header) == "genre: folk\ntitle: Paper Boats\n\nWe folded"
    assert song_prompt("We folded", header) == format_header(header, ["genre", "title"]) + "We folded"
    assert song_prompt("We folded", {}) == "We folded"


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_run):
    return load_for_generation(ckpt_path=str(tiny_run / "checkpoints" / "last.ckpt"))


def test_same_seed_same_songs_and_rng_left_alone(model_and_tokenizer):
    model, tok = model_and_tokenizer
    sampling = Sampling(num_samples=2, max_new_tokens=8, seed=7)
    torch.manual_seed(0)
    first = generate_songs(model, tok, ["Night road", ""], sampling, {"genre": "folk"})
    after = torch.rand(3)
    torch.manual_seed(0)
    assert generate_songs(model, tok, ["Night road", ""], sampling, {"genre": "folk"}) == first
    assert torch.equal(torch.rand(3), after)  # sampling restores the global RNG (training is unaffected)
    assert len(first) == 4
    assert first[0]["text"] != first[1]["text"]
    assert first[0]["text"].startswith("genre: folk\n\nNight road")
    other = generate_songs(model, tok, ["Night road", ""], Sampling(num_samples=1, max_new_tokens=8, seed=8))
    assert [r["completion"] for r in other] != [r["completion"] for r in first[::2]]
    for key in ("prompt", "text", "num_samples", "max_new_tokens", "min_new_tokens", "temperature", "top_k"):
        assert key in first[0]
    for key in ("top_p", "repetition_penalty", "no_repeat_ngram_size", "seed"):
        assert key in first[0]


def test_generation_stops_at_eos_after_min_new_tokens(model_and_tokenizer):
    model, tok = model_and_tokenizer
    # Make EOS overwhelmingly likely: the song must end as soon as min_new_tokens allows.
    hook = model.lm_head.register_forward_hook(
        lambda m, i, out: out.index_add(-1, torch.tensor([50256]), torch.full((*out.shape[:-1], 1), 1e4))
    )
    try:
        [rec] = generate_songs(model, tok, [""], Sampling(max_new_tokens=20, min_new_tokens=3))
    finally:
        hook.remove()
    assert rec["ended"]
    assert rec["new_tokens"] == 3
    assert "<|endoftext|>" not in rec["text"]


class FakeTerminal(io.StringIO):
    """A terminal for SongProgress that notes, with each write, how many forward passes the model had made."""

    def __init__(self, forwards: list[int]) -> None:
        super().__init__()
        self.forwards = forwards
        self.writes: list[tuple[str, int]] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.writes.append((text, len(self.forwards)))
        return super().write(text)


def test_a_song_streams_to_a_terminal_as_it_is_written_and_samples_the_same():
    model, tok = tiny_model(n_positions=64)
    forwards: list[int] = []
    hook = model.register_forward_hook(lambda *_: forwards.append(1))
    term = FakeTerminal(forwards)
    sampling = Sampling(max_new_tokens=16, min_new_tokens=16, seed=3)  # no EOS: the song is cut at 16 tokens
    try:
        [rec] = generate_songs(model, tok, ["Down by the river"], sampling, progress=SongProgress(term, stream=True))
    finally:
        hook.remove()
    heading = "===== song 1/1: prompt 'Down by the river', sample 1\n"
    assert term.getvalue() == heading + rec["text"] + "\n(cut at max_new_tokens=16)\n\n"
    assert term.writes[0] == (heading + "Down by the river", 0)  # the heading and prompt before the first token
    # The new text came in pieces while the model was still writing, not in one piece at the end.
    during = [text for text, seen in term.writes[1:] if 0 < seen < len(forwards)]
    assert len(during) >= 3
    assert "".join(text for text, _ in term.writes[1:-1]) == rec["completion"]
    assert generate_songs(model, tok, ["Down by the river"], sampling) == [rec]  # streaming changed no sampling


def test_songs_sampled_side_by_side_are_printed_whole_as_each_prompt_completes():
    model, tok = tiny_model(n_positions=64)
    out = io.StringIO()  # not a terminal: no bar is drawn, nothing but the songs
    sampling = Sampling(num_samples=2, max_new_tokens=8)
    records = generate_songs(model, tok, ["Night", "Day"], sampling, progress=SongProgress(out, bar=True))
    assert out.getvalue() == format_songs(records)
    assert "song 4/4: prompt 'Day', sample 2" in out.getvalue()


def test_model_source_errors(tmp_path):
    with pytest.raises(LyricLMError, match="exactly one of"):
        load_for_generation()
    with pytest.raises(LyricLMError, match="does not exist"):
        load_for_generation(ckpt_path=str(tmp_path / "missing.ckpt"))
    with pytest.raises(LyricLMError, match="holds no model"):
        load_for_generation(model_dir=str(tmp_path))


def run_generate(*args: str, cwd) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "generate.py"), *args]
    return subprocess.run(cmd, cwd=cwd, env=run_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_prints_three_songs_twice_the_same_and_writes_jsonl(tiny_run, tmp_path):
    args = [f"ckpt_path={tiny_run}/checkpoints/last.ckpt", "prompt=Down by the river", "num_samples=3", "seed=1"]
    args += ["max_new_tokens=16", "genre=folk"]
    first = run_generate(*args, f"output_file={tmp_path / 'songs.jsonl'}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("genre: folk\n\nDown by the river") == 3
    assert "song 3/3" in first.stdout
    records = [json.loads(line) for line in (tmp_path / "songs.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert {r["seed"] for r in records} == {1}
    assert all(r["prompt"] == "Down by the river" and r["max_new_tokens"] == 16 for r in records)
    # The run's exported model (its best checkpoint is its last, step 3) with the same seed: the same three songs.
    again = run_generate(f"model_dir={tiny_run}/hf_model", *args[1:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout == first.stdout.split("wrote ")[0]
    assert not list(tmp_path.glob("outputs"))  # generating leaves no run directory behind


@pytest.mark.slow
def test_cli_piped_output_is_each_song_once_whole_and_in_order(tiny_run, tmp_path):
    args = [f"ckpt_path={tiny_run}/checkpoints/last.ckpt", "prompt=[Night road,Morning]", "num_samples=2"]
    proc = run_generate(*args, "max_new_tokens=12", "output_file=songs.jsonl", cwd=tmp_path)  # stdout is a pipe
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "songs.jsonl").read_text().splitlines()]
    assert proc.stdout == format_songs(records) + "wrote 4 songs to songs.jsonl\n"
    assert "\r" not in proc.stdout + proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr  # no ANSI codes: no bar, no colours
    assert proc.stderr == ""  # no library notices before the songs


@pytest.mark.slow
def test_cli_bad_value_is_one_line(tmp_path):
    proc = run_generate("model_dir=nowhere/hf_model", "top_p=1.5", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: top_p=1.5 is out of range; top_p must be in (0, 1]"


@pytest.mark.slow
def test_cli_default_settings_fit_the_quickstart_context(tiny_run, tmp_path):
    # max_new_tokens=256 by default, the tiny model's context is 256 tokens: capped, with a note.
    proc = run_generate(f"ckpt_path={tiny_run}/checkpoints/last.ckpt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: max_new_tokens=256 capped at 255: the model's context is 256 tokens" in proc.stderr
    assert "song 1/1" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arg", "error"),
    [
        ("num_samples=1.5", "error: num_samples=1.5 is not a whole number; give an integer such as 1"),
        ("output_file=songs", "error: output_file=songs is a directory; give a file name such as songs/songs.jsonl"),
    ],
)
def test_cli_bad_setting_is_one_line_before_sampling(tiny_run, tmp_path, arg, error):
    (tmp_path / "songs").mkdir()
    proc = run_generate(f"ckpt_path={tiny_run}/checkpoints/last.ckpt", arg, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == error
    assert proc.stdout == ""  # nothing sampled
    assert [p.name for p in tmp_path.rglob("*")] == ["songs"]  # no stray .tmp


def test_write_jsonl_into_a_directory_fails_before_sampling(tmp_path):
    from lyric_lm.songs.sampling import generate

    (tmp_path / "songs.jsonl").mkdir()
    cfg = {"model_dir": "gpt2", "output_file": str(tmp_path / "songs.jsonl")}
    with pytest.raises(LyricLMError, match="is a directory; give a file name"):
        generate(cfg)  # before loading any model: gpt2 is not reachable offline
    (tmp_path / "file").write_text("")
    with pytest.raises(LyricLMError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        generate({**cfg, "output_file": str(tmp_path / "file" / "songs.jsonl")})


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        ("generate", ["ckpt_path=run/checkpoints/last.ckpt", "prompt=Down by the river", "num_samples=3", "seed=1"]),
        ("generate", ["model_dir=run/hf_model", "genre=folk", "title=Paper Boats", "output_file=songs.jsonl"]),
        ("generate", ["model_dir=gpt2", "prompt_file=p.txt", "temperature=0.8", "top_p=0.9", "min_new_tokens=4"]),
        ("generate", ['prompt=[Down by the river,"Oh, Mary"]', "repetition_penalty=1.2", "no_repeat_ngram_size=3"]),
        ("export", ["ckpt_path=run/checkpoints/last.ckpt", "output_dir=exports/folk_v1"]),
        ("evaluate", ["ckpt_path=run/checkpoints/last.ckpt", "num_samples=20", "seed=0", "data_path=x.txt"]),
    ],
)
def test_readme_commands_compose_and_sampling_defaults_are_valid(config, overrides):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config, overrides=overrides)
    for override in overrides:
        key = override.split("=")[0]
        assert OmegaConf.select(cfg, key) is not None
    if config != "export":
        Sampling.from_config(cfg)  # the shipped defaults pass the checks


def test_header_follows_the_field_order_the_model_was_trained_with(tmp_path):
    from lyric_lm.songs.sampling import header_order

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    (run / "config_resolved.yaml").write_text("data:\n  condition_on: [genre, title]\n")
    assert header_order(str(run / "checkpoints" / "last.ckpt"), None) == ["genre", "title", "artist"]
    (run / "hf_model").mkdir()
    assert header_order(None, str(run / "hf_model")) == ["genre", "title", "artist"]
    assert header_order(None, "gpt2") == ["title", "artist", "genre"]  # no run: the lyrics format's order


@pytest.mark.slow
def test_cli_song_in_form_prints_stanzas_and_writes_the_form_asked_and_measured(tiny_run, tmp_path):
    args = [f"ckpt_path={tiny_run}/checkpoints/last.ckpt", "rhyme_scheme=AABB", "syllables=6", "stanzas=2"]
    args += ["candidates=4", "structure=[verse,chorus]", "stanzas=null", "output_file=songs.jsonl"]
    proc = run_generate(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = [json.loads(line) for line in (tmp_path / "songs.jsonl").read_text().splitlines()]
    assert proc.stdout == format_songs([record]) + "wrote 1 songs to songs.jsonl\n"
    assert record["form"] == {
        "rhyme_scheme": "AABB",
        "syllables": 6,
        "syllable_tolerance": 1,
        "stanzas": 2,
        "structure": ["verse", "chorus"],
        "candidates": 4,
    }
    measured = record["form_measured"]
    assert measured["stanza_lines"] == [4, 4]
    assert {"rhyme_pair_share", "syllables_kept_share", "stanza_schemes", "end_rhyme_rate"} <= set(measured)
    assert record["completion"].startswith("[Verse]\n")
    assert "\n\n[Chorus]\n" in record["completion"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arg", "error"),
    [
        ("rhyme_scheme=ABXQ?", "error: rhyme_scheme=ABXQ? holds more than letters; give a capital letter per line"),
        ("rhyme_scheme=aabb", "error: rhyme_scheme=aabb: write it in capital letters (AABB)"),
        ("syllables=0", "error: syllables=0 is out of range; syllables must be between 1 and 40 (or null: any)"),
        ("structure=[verse,hook]", "error: structure: 'hook' is not a song part; use verse, chorus, pre-chorus"),
    ],
)
def test_cli_bad_form_setting_is_one_line_before_loading(tmp_path, arg, error):
    proc = run_generate("model_dir=nowhere/hf_model", arg, cwd=tmp_path)  # no model there: the form fails first
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith(error)
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""
