"""Form-following generation: the settings checked, the steering and the choice of each line, whole songs (stanzas,
lines, rhyme, syllables, a repeated chorus, same seed same song), and the form measured."""

import io
import re
import sys
from dataclasses import asdict

import pytest
import torch
from omegaconf import OmegaConf

from lyric_lm.errors import LyricLMError
from lyric_lm.songs.form import end_word, line_syllables, rhyme, stanzas
from lyric_lm.songs.form_sampling import (
    Form,
    LineSteer,
    choose_line,
    form_kept,
    form_summary,
    form_vocab,
    line_rule,
    part_tags,
)
from lyric_lm.songs.samples import SampleLyrics
from lyric_lm.songs.sampling import Sampling, SongProgress, generate, generate_songs
from tests.conftest import CONF


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"rhyme_scheme": "ABXQ?"}, "rhyme_scheme=ABXQ? holds more than letters; give a capital letter per line"),
        ({"rhyme_scheme": "aabb"}, "rhyme_scheme=aabb: write it in capital letters (AABB)"),
        (
            {"rhyme_scheme": "ABXQ"},
            "rhyme_scheme=ABXQ: name the rhymes in order of first use (A, then B, ...): ABCD",
        ),
        ({"rhyme_scheme": 1234}, "rhyme_scheme=1234 is not letters"),
        ({"syllables": 0}, "syllables=0 is out of range; syllables must be between 1 and 40"),
        ({"syllables": 1.5}, "syllables=1.5 is not a whole number"),
        ({"syllable_tolerance": -1}, "syllable_tolerance=-1 is out of range; syllable_tolerance must be 0 or more"),
        ({"stanzas": 0}, "stanzas=0 is out of range"),
        ({"candidates": 0}, "candidates=0 is out of range"),
        ({"structure": ["verse", "hook"]}, "structure: 'hook' is not a song part; use verse, chorus, pre-chorus"),
        ({"structure": []}, "structure=[] has no parts"),
        ({"stanzas": 3, "structure": ["verse", "chorus"]}, "stanzas=3 but structure has 2 parts; give only one"),
    ],
)
def test_a_bad_form_setting_is_one_line(settings, error):
    with pytest.raises(LyricLMError, match="^" + re.escape(error)):
        Form.from_config(settings)


def test_form_settings_are_written_once_and_off_by_default():
    written = OmegaConf.to_container(OmegaConf.load(CONF / "sampling" / "form" / "default.yaml"))
    assert written == asdict(Form())
    assert not Form().active
    form = Form.from_config(OmegaConf.create({"structure": ["verse", "chorus"], "syllables": 8, "top_p": 0.9}))
    assert form.structure == ("verse", "chorus")
    assert form.active
    assert form.parts() == ["verse", "chorus"]
    assert form.window() == (7, 9)
    assert Form(rhyme_scheme="ABAB").parts() == ["verse"] * 3  # a form without stanzas= has 3


def test_generate_refuses_a_bad_form_before_loading_any_model():
    with pytest.raises(LyricLMError, match="^structure: 'hook' is not a song part"):
        generate({"model_dir": "gpt2", "structure": ["verse", "hook"]})  # gpt2 is not reachable offline


def test_tags_are_written_as_the_builtin_sample_writes_them():
    parts = ["verse", "pre-chorus", "chorus", "verse", "chorus", "bridge"]
    assert part_tags(parts) == ["[Verse 1]", "[Pre-Chorus]", "[Chorus]", "[Verse 2]", "[Chorus]", "[Bridge]"]


@pytest.fixture(scope="module")
def tokenizer():
    from lyric_lm.tokenizer import load_tokenizer

    return load_tokenizer("gpt2", "bundled")


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return form_vocab(tokenizer)


def test_a_letter_heard_before_asks_a_perfect_rhyme_and_a_new_one_asks_none(vocab):
    form = Form(rhyme_scheme="AABB")
    second = line_rule(vocab, form, ["night"])
    assert second.accepts("light")
    assert not second.accepts("night")  # the same word is not a rhyme
    assert not second.accepts("time")  # a near rhyme is not asked for
    ends = {vocab.words[t] for t in second.end_tokens.nonzero().flatten().tolist()}
    assert {"light", "tonight", "bright"} <= ends
    assert all(rhyme(w, "night").kind == "rhyme" for w in ends)
    third = line_rule(vocab, form, ["night", "light"])  # B: must not rhyme with A, and be answerable
    assert third.accepts("day")
    assert not third.accepts("bright")
    assert not third.accepts("zorblax")  # not in the dictionary: the fourth line could not be judged
    ends = {vocab.words[t] for t in third.end_tokens.nonzero().flatten().tolist()}
    assert "day" in ends
    assert "bright" not in ends


def test_the_steering_opens_the_line_break_only_on_an_accepted_word_inside_the_window(tokenizer, vocab):
    rule = line_rule(vocab, Form(rhyme_scheme="AABB", syllables=8), ["night"])  # 7 to 9 syllables, rhyme with night
    assert (rule.low, rule.high) == (7, 9)
    prefix = "We walked along the empty"  # 7 syllables
    steer = LineSteer(tokenizer, vocab, rule, prefix, start=0, budget=26)
    ids = {
        w: tokenizer(w, add_special_tokens=False)["input_ids"]
        for w in (" road", " light", " tonight", " day", " bright")
    }
    [allowed] = steer.allowed([[]])
    assert not allowed[vocab.newline]  # "empty" does not rhyme with night
    assert allowed[ids[" light"]]
    assert allowed[ids[" tonight"]]
    assert allowed[ids[" road"]]  # 8: a word that still leaves room for a 1-syllable end word
    assert not allowed[tokenizer.eos_token_id]
    [after_light] = steer.allowed([ids[" light"]])
    assert after_light[vocab.newline]  # may end here ...
    assert after_light[ids[" bright"]]  # ... or go on to 9 on a rhyme ...
    assert not after_light[ids[" day"]]  # ... but not on a word that leaves no room for one
    [after_road] = steer.allowed([ids[" road"]])  # 8 syllables, "road": only a 1-syllable rhyme fits now
    assert not after_road[vocab.newline]
    assert after_road[ids[" light"]]
    assert not after_road[ids[" day"]]
    assert not after_road[ids[" tonight"]]
    [full] = steer.allowed([ids[" tonight"]])  # 9 syllables on a rhyme: a line break, or one mark before it
    assert full[vocab.newline]
    assert full.sum() <= 10


def test_the_likeliest_candidate_that_keeps_the_form_wins(vocab):
    rule = line_rule(vocab, Form(rhyme_scheme="AABB", syllables=6, syllable_tolerance=0), ["night"])
    found = [
        ("I will hold you in the light", True, -1.0),  # 7 syllables
        ("Hold me close into the light", True, -2.5),  # 7 syllables
        ("Hold me in the morning light", True, -3.0),  # 7 syllables
        ("Hold me in the fading light", False, -0.5),  # ran out of tokens: keeps nothing
        ("Stay with me tonight", True, -4.0),  # 5
        ("Come and stay with me tonight", True, -5.0),  # 7
        ("Hold me in the light", True, -6.0),  # 5
        ("Hold me close tonight, love", True, -0.1),  # 6, but ends on love
        ("Darling hold me tight", True, -7.0),  # 5
        ("Come and hold me tight", True, -8.0),  # 5
        ("Come on and hold me tight", True, -9.0),  # 6, rhymes: the only one that keeps both
    ]
    assert choose_line(found, "", rule).text == "Come on and hold me tight"
    line = choose_line(found[:-1], "", rule)  # none keeps both: the likeliest that keeps one of them
    assert (line.text, line.kept_syllables, line.kept_rhyme) == ("Hold me close tonight, love", True, False)


def test_the_form_is_measured_on_the_text():
    song = (
        "title: X\n\n[Verse 1]\nthe night\nthe light\nthe day\nthe sea\n\n[Chorus]\nmy love\nup above\nthe rain\nagain"
    )
    kept = form_kept(song, Form(rhyme_scheme="AABB", syllables=2, syllable_tolerance=0))
    assert (kept["rhyme_pairs"], kept["rhymed_pairs"]) == (4, 3)  # day/sea does not rhyme
    assert kept["rhyme_pair_share"] == 0.75
    assert kept["syllables_kept_share"] == 7 / 8  # "up above" has 3
    assert kept["stanza_lines"] == [4, 4]
    assert kept["stanza_schemes"] == ["AABC", "AABB"]
    assert form_summary(kept) == "rhyme 3/4 pairs, syllables 88% of lines"


def favour_dictionary_words(model, vocab, bonus: float = 12.0):
    """A random model that writes words: dictionary words (" light") get `bonus` added to their logits."""
    boost = torch.zeros(len(vocab.word_start))
    boost[[t for tokens in vocab.sounds.values() for t in tokens]] = bonus
    return model.lm_head.register_forward_hook(lambda m, i, out: out + boost)


@pytest.fixture(scope="module")
def wordy_model(vocab):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=128)).eval()
    hook = favour_dictionary_words(model, vocab)
    yield model
    hook.remove()


def test_a_song_keeps_its_stanzas_lines_rhymes_and_syllables(wordy_model, tokenizer):
    form = Form(rhyme_scheme="AABB", syllables=5, stanzas=2, candidates=4)
    [rec] = generate_songs(wordy_model, tokenizer, ["Down by the river"], Sampling(seed=3), form=form)
    song = stanzas(rec["text"])
    assert [len(s) for s in song] == [4, 4]
    assert song[0][0].startswith("Down by the river")  # the prompt begins the first line
    assert all(4 <= line_syllables(ln) <= 6 for s in song for ln in s)
    for s in song:
        a1, a2, b1, b2 = map(end_word, s)
        assert rhyme(a1, a2).kind == rhyme(b1, b2).kind == "rhyme"
        assert rhyme(a1, b1).kind == "none"
    measured = rec["form_measured"]
    assert measured["rhyme_pair_share"] == measured["syllables_kept_share"] == 1.0
    assert rec["form"] == {**asdict(form), "structure": None}
    assert rec["ended"]
    assert rec["text"] == "Down by the river" + rec["completion"]


def test_a_chorus_is_written_once_and_repeated_verbatim_and_verses_are_new(wordy_model, tokenizer):
    form = Form(rhyme_scheme="AA", syllables=4, structure=("verse", "chorus", "verse", "chorus"), candidates=2)
    [rec] = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=5), form=form)
    blocks = rec["completion"].split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["[Verse 1]", "[Chorus]", "[Verse 2]", "[Chorus]"]
    assert [len(b.split("\n")) for b in blocks] == [3, 3, 3, 3]
    assert blocks[1] == blocks[3]
    assert blocks[0].split("\n")[1:] != blocks[2].split("\n")[1:]
    assert rec["form_measured"]["repeated_chorus_share"] == 1.0


def test_same_seed_same_song_streamed_line_by_line(wordy_model, tokenizer):
    form = Form(rhyme_scheme="ABAB", syllables=4, stanzas=1, candidates=2)
    term = io.StringIO()
    streamed = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=9, num_samples=2), form=form,
                              progress=SongProgress(term, stream=True))  # fmt: skip
    again = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=9, num_samples=2), form=form)
    assert streamed == again
    assert streamed[0]["text"] != streamed[1]["text"]
    assert term.getvalue() == "".join(
        f"===== song {n}/2: prompt '', sample {n}\n" + r["text"] + "\n\n" for n, r in enumerate(streamed, 1)
    )
    other = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=10), form=form)
    assert other[0]["text"] != streamed[0]["text"]


def test_samples_callback_takes_the_form_settings():
    callback = SampleLyrics(prompts=[""], rhyme_scheme="AABB", syllables=8, max_new_tokens=32)
    assert callback.form == Form(rhyme_scheme="AABB", syllables=8)
    assert callback.sampling.max_new_tokens == 32
    assert not SampleLyrics(prompts=[""], rhyme_scheme=None).form.active


@pytest.mark.parametrize(
    "overrides",
    [
        ["rhyme_scheme=AABB", "syllables=8", "syllable_tolerance=1", "stanzas=3"],
        ["structure=[verse,chorus,verse,chorus]", "rhyme_scheme=ABAB", "candidates=4"],
    ],
)
def test_the_issue_commands_compose_and_the_samples_callback_takes_form_keys(overrides, tmp_path):
    from hydra import compose, initialize_config_dir

    from tests.conftest import compose_train

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="generate", overrides=["ckpt_path=run/checkpoints/last.ckpt", *overrides])
    form = Form.from_config(cfg)
    assert form.active
    assert Sampling.from_config(cfg) == Sampling()  # the sampling settings are untouched
    samples = compose_train(*[f"callbacks.samples.{o}" for o in overrides], output_dir=tmp_path).callbacks.samples
    assert Form.from_config(samples) == form
    assert not Form.from_config(compose_train(output_dir=tmp_path).callbacks.samples).active


def test_stanzas_carry_section_tags_when_the_model_would_write_them(wordy_model, tokenizer):
    form = Form(syllables=4, stanzas=2, candidates=2)
    [plain] = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=1), form=form)
    assert "[" not in plain["text"]  # a random model does not head its stanzas with tags
    [bracket] = tokenizer("[", add_special_tokens=False)["input_ids"]
    bonus = torch.zeros(len(tokenizer))
    bonus[bracket] = 30.0  # now "[" is its likeliest first token (and the steering keeps it out of lines)
    hook = wordy_model.lm_head.register_forward_hook(lambda m, i, out: out + bonus)
    try:
        [tagged] = generate_songs(wordy_model, tokenizer, [""], Sampling(seed=1), form=form)
    finally:
        hook.remove()
    blocks = tagged["completion"].split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["[Verse 1]", "[Verse 2]"]
    assert [len(s) for s in stanzas(tagged["text"])] == [4, 4]


def load_bench():
    import importlib.util

    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("form_bench", ROOT / "bench" / "form.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclass looks its module up there
    spec.loader.exec_module(bench)
    return bench


def test_bench_reads_its_figures_against_the_targets_and_writes_only_its_section(tmp_path):
    import argparse

    bench = load_bench()
    row = {"songs": 2, "pairs": 12, "lines": 24, "tokens_per_song": 130, "ppl": 20.0, "lyric_ppl": 30.0}
    free = {**row, "name": "free", "rhyme": 0.02, "syllables": 0.2, "s_per_song": 1.0, "ms_per_token": 8.0}
    as_long = {**free, "name": "free as long"}
    form = {**row, "name": "AABB", "rhyme": 0.99, "syllables": 1.0, "s_per_song": 3.0, "ms_per_token": 24.0}
    unsteered = {**form, "name": "unsteered", "rhyme": 0.1}
    results = [free, form, as_long, {**form, "name": "ABAB", "rhyme": 0.95}, unsteered]
    song = "[Verse 1]\nthe night\nthe light\nthe day\nthe way"
    section = bench.report(argparse.Namespace(songs=2, threads=1), "x.ckpt", results, song, bench.AABB)
    reading = " ".join(section.split("Reading:")[1].split("\n\n")[0].split())
    assert "at least 95% of the asked pairs rhyme and 100% of lines" in reading
    assert "3.0x the time of a free song as long and 3.0x the time per token" in reading
    assert "targets (90%, 4x) met" in reading
    slow = [free, {**form, "s_per_song": 5.0}, *results[2:]]
    assert "NOT met" in bench.report(argparse.Namespace(songs=2, threads=1), "x.ckpt", slow, song, bench.AABB)
    assert "measured: 2/2 pairs rhyme" in section
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{bench.BEGIN}\nold\n{bench.END}\n\n## other\nkept\n")
    bench.write_section(path, section)
    text = path.read_text()
    assert text.count(bench.BEGIN) == 1
    assert "old" not in text
    assert text.endswith("## other\nkept\n")


def test_bench_perplexity_of_lyric_lines_leaves_out_tags_and_blank_lines(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=8)).eval()  # windows of 8
    text = "[Verse 1]\nI walk the line tonight\nAnd hold the light\n\n[Chorus]\nOh my"
    total, count, lyric_total, lyric_count = load_bench().song_nll(model, tokenizer, text)
    assert count == len(tokenizer(text)["input_ids"])
    assert lyric_count == 6 + 5 + 2  # each lyric line's tokens and its line break
    assert 0 < lyric_total < total
