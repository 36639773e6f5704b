"""Form-following generation: songs in stanzas whose lines keep a syllable count and rhyme as a scheme asks.

A song is written line by line from the model's own samples. For each line `candidates` continuations are sampled
side by side (one `model.generate`, stopped at the line break), each steered by `LineSteer`, a logits processor
that lets a line break in only after an end word the rhyme accepts with the syllables inside the window, and keeps
words that would overrun it out; `TopKSampler` then draws each token as the user's temperature, top_k and top_p
ask. The candidate that keeps the form with the best mean log-likelihood under the model (its raw logits, before
any steering or sampling filter) is kept. A chorus is written once and repeated. bench/form.py measures it
(BENCHMARKS.md): steering the end words is what makes rhymes; more candidates buy fluency.
"""

from __future__ import annotations

import copy
import re
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, PreTrainedModel

from lyric_lm.errors import LyricLMError
from lyric_lm.songs.form import (
    LETTERS,
    end_word,
    in_dictionary,
    line_syllables,
    normalize,
    rhyme,
    rhyme_parts,
    rhyme_scheme,
    song_form,
    stanzas,
    syllables,
)
from lyric_lm.tokenizer import song_ids

PARTS = ("verse", "chorus", "pre-chorus", "bridge", "intro", "outro")
REPEATED_PARTS = frozenset({"chorus", "pre-chorus"})  # written once, then sung again word for word
DEFAULT_STANZAS = 3  # when a form is asked without stanzas= or structure=
DEFAULT_LINES = 4  # lines per stanza without a rhyme_scheme
TAG_PROBABILITY = 0.2  # see writes_tags
# A line without syllables= ends where the model ends it, among these syllable counts (the builtin sample's lines:
# 10.8 +- 3.1 syllables).
FREE_WINDOW = (4, 16)
# A rhyme sound opened by a line whose letter comes back must have more than this many single-token words in the
# vocabulary, so the lines that answer it have words to choose from (GPT-2: 420 such sounds, 10,262 words).
RICH = 8
END_PUNCTUATION = frozenset({",", ".", "!", "?", "...", ";"})  # one may stand between the end word and the break
END_MARKS = ",.!?;"
# Pieces (letters without a space) one word may take after its first token: " un"+"believ"+"able", not the
# "Verse"+"se"+"se"+"orus" a weak model writes when its "[Verse 2]" is refused.
MAX_PIECES = 2
# Words that cannot end a line: articles, possessives, and the joints of a phrase ("and the", "of my"). The
# dictionary rhymes "an" with "sun" through its unstressed AH0 N; no one sings it so.
NOT_END_WORDS = frozenset("a an the and or nor of to for with from than my your his its our their".split())  # noqa: SIM905
# Never inside a form line: line breaks, digits (no pronunciation), [tags] and "name:" headers (evaluation drops
# those lines), markup, and byte pieces of characters that one token cannot hold.
BANNED_CHARS = re.compile(r"[\n\r\t\d\[\]{}:=|<>#*_~\\/@\ufffd]")
WORD_TOKEN = re.compile(r" [A-Za-z]+")  # a word, if the next token starts another (" light", not " light"+"ning")
PIECE_TOKEN = re.compile(r"[A-Za-z']+")  # letters with no space before them
VOWEL_GROUPS = re.compile(r"[aeiouy]+")


@dataclass(frozen=True)
class Form:
    """The form a song is asked to keep; checked at construction so a bad value fails before any model is loaded.

    Any of rhyme_scheme, syllables, stanzas or structure turns form-following generation on.
    """

    rhyme_scheme: str | None = None  # one capital letter per line of a stanza, same letter same rhyme: AABB, ABAB
    syllables: int | None = None  # syllables per line
    syllable_tolerance: int = 1  # a line may have syllables +- this many
    stanzas: int | None = None  # how many stanzas (None: one per part of `structure`, else DEFAULT_STANZAS)
    structure: tuple[str, ...] | None = None  # the parts in order, e.g. (verse, chorus, verse, chorus)
    candidates: int = 16  # lines sampled side by side for each line of the song; the best that keeps the form wins

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("rhyme_scheme", "structure") or value is None and f.default is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise LyricLMError(f"{f.name}={value} is not a whole number; give an integer such as 8")
        if self.rhyme_scheme is not None:
            check_scheme(self.rhyme_scheme)
        checks = [
            ("syllables", self.syllables is None or 1 <= self.syllables <= 40, "between 1 and 40 (or null: any)"),
            ("syllable_tolerance", self.syllable_tolerance >= 0, "0 or more"),
            ("stanzas", self.stanzas is None or 1 <= self.stanzas <= 64, "between 1 and 64 (or null)"),
            ("candidates", 1 <= self.candidates <= 256, "between 1 and 256"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise LyricLMError(f"{name}={getattr(self, name)} is out of range; {name} must be {expected}")
        if self.structure is not None:
            if not self.structure:
                raise LyricLMError("structure=[] has no parts; give some, e.g. structure=[verse,chorus,verse,chorus]")
            unknown = [p for p in self.structure if p not in PARTS]
            if unknown:
                raise LyricLMError(f"structure: {unknown[0]!r} is not a song part; use {', '.join(PARTS)}")
            if self.stanzas is not None and self.stanzas != len(self.structure):
                raise LyricLMError(
                    f"stanzas={self.stanzas} but structure has {len(self.structure)} parts; give only one of them"
                )

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Form:
        """The form settings among a config's keys (other keys are ignored); a Hydra list becomes a tuple."""
        kwargs = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        if "syllable_tolerance" in kwargs and kwargs["syllable_tolerance"] is None:
            del kwargs["syllable_tolerance"]
        if kwargs.get("candidates") is None:
            kwargs.pop("candidates", None)
        structure = kwargs.get("structure")
        if structure is not None:
            kwargs["structure"] = (structure,) if isinstance(structure, str) else tuple(str(p) for p in structure)
        scheme = kwargs.get("rhyme_scheme")
        if scheme is not None and not isinstance(scheme, str):
            raise LyricLMError(f"rhyme_scheme={scheme} is not letters; give one capital letter per line, e.g. AABB")
        return cls(**kwargs)

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.rhyme_scheme, self.syllables, self.stanzas, self.structure))

    def parts(self) -> list[str]:
        """The part of each stanza, in order ("verse" for every stanza without a structure)."""
        return list(self.structure) if self.structure else ["verse"] * (self.stanzas or DEFAULT_STANZAS)

    def window(self) -> tuple[int, int]:
        """The syllables a line may have, (lowest, highest)."""
        if self.syllables is None:
            return FREE_WINDOW
        return max(1, self.syllables - self.syllable_tolerance), self.syllables + self.syllable_tolerance

    def lines_per_stanza(self) -> int:
        return len(self.rhyme_scheme) if self.rhyme_scheme else DEFAULT_LINES

    def asked(self) -> dict[str, Any]:
        """The form as a JSON record holds it."""
        return {
            "rhyme_scheme": self.rhyme_scheme,
            "syllables": self.syllables,
            "syllable_tolerance": self.syllable_tolerance,
            "stanzas": len(self.parts()),
            "structure": list(self.structure) if self.structure else None,
            "candidates": self.candidates,
        }


def check_scheme(scheme: str) -> None:
    """One clear line for a rhyme scheme that cannot be followed: letters only, capitals, in order of first use."""
    if not scheme or not all(c in LETTERS for c in scheme):
        raise LyricLMError(f"rhyme_scheme={scheme} holds more than letters; give a capital letter per line, e.g. AABB")
    if scheme != scheme.upper():
        raise LyricLMError(f"rhyme_scheme={scheme}: write it in capital letters ({scheme.upper()})")
    if len(scheme) > 16:
        raise LyricLMError(f"rhyme_scheme={scheme} has {len(scheme)} lines; a stanza may have 1 to 16")
    order: dict[str, str] = {}
    canon = "".join(order.setdefault(c, LETTERS[len(order)]) for c in scheme)
    if canon != scheme:
        raise LyricLMError(f"rhyme_scheme={scheme}: name the rhymes in order of first use (A, then B, ...): {canon}")


# ---- the vocabulary as words --------------------------------------------------------------------------------------


@dataclass
class FormVocab:
    """What each token of a tokenizer does to a lyric line, as (V,) tensors that mask logits in one operation."""

    newline: int
    word_start: torch.Tensor  # bool: a space, then letters (" light"): a word, unless the next token goes on with it
    word_syllables: torch.Tensor  # long: that word's syllables
    piece: torch.Tensor  # bool: letters with no space: a line's first word, or more of the last word ("ning")
    piece_syllables: torch.Tensor  # long: its spelled vowel groups (an estimate; the rerank counts whole words)
    capital: torch.Tensor  # bool: a piece that starts with a capital: a line's first word, not the inside of one
    apostrophe: torch.Tensor  # bool: a piece that starts with an apostrophe ("'s", "'t", "'ll")
    other: torch.Tensor  # bool: punctuation and spaces
    banned: torch.Tensor  # bool: see BANNED_CHARS; and the end-of-text token
    end_punctuation: torch.Tensor  # bool: END_PUNCTUATION tokens
    rich: torch.Tensor  # bool: word_start tokens of dictionary words whose rhyme sound has more than RICH words
    not_end: torch.Tensor  # bool: word_start tokens of NOT_END_WORDS
    words: dict[int, str]  # word_start token -> its word, normalised
    sounds: dict[tuple[str, ...], list[int]]  # rhyme part -> word_start tokens of dictionary words with that part
    sound_words: dict[tuple[str, ...], int]  # rhyme part -> how many distinct words those tokens are

    def rhyming(self, part_of: str) -> list[int]:
        """word_start tokens of dictionary words that share a rhyme part with `part_of`."""
        return sorted({t for p in rhyme_parts(part_of) for t in self.sounds.get(p, ())})

    def is_rich(self, word: str) -> bool:
        return in_dictionary(word) and any(self.sound_words.get(p, 0) > RICH for p in rhyme_parts(word))


_vocabs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def form_vocab(tokenizer) -> FormVocab:
    """The FormVocab of a tokenizer, built once per process (2-4 s for GPT-2's 50,257 tokens on one CPU core)."""
    if tokenizer not in _vocabs:
        _vocabs[tokenizer] = build_vocab(tokenizer)
    return _vocabs[tokenizer]


def build_vocab(tokenizer) -> FormVocab:
    size = len(tokenizer)
    texts = tokenizer.batch_decode(torch.arange(size)[:, None])  # (V, 1): each token alone
    special = set(tokenizer.all_special_ids)
    [newline] = tokenizer("\n", add_special_tokens=False)["input_ids"]
    word_start, piece, banned, end_punct = (torch.zeros(size, dtype=torch.bool) for _ in range(4))
    word_syll, piece_syll = torch.zeros(size, dtype=torch.long), torch.zeros(size, dtype=torch.long)
    words: dict[int, str] = {}
    sounds: dict[tuple[str, ...], list[int]] = {}
    distinct: dict[tuple[str, ...], set[str]] = {}
    for i, text in enumerate(texts):
        if BANNED_CHARS.search(text) or i in special or not text:
            banned[i] = True
        elif WORD_TOKEN.fullmatch(text):
            word = normalize(text[1:])
            if syllables(word) == 0:  # a dictionary quirk ("fs": F S) that would fill a line for free
                banned[i] = True
                continue
            word_start[i], word_syll[i], words[i] = True, syllables(word), word
            if in_dictionary(word) and word not in NOT_END_WORDS:
                for p in rhyme_parts(word):
                    sounds.setdefault(p, []).append(i)
                    distinct.setdefault(p, set()).add(word)
        elif PIECE_TOKEN.fullmatch(text):
            piece[i], piece_syll[i] = True, len(VOWEL_GROUPS.findall(text.lower()))
        elif text in END_PUNCTUATION:
            end_punct[i] = True
    sound_words = {p: len(ws) for p, ws in distinct.items()}
    rich = torch.zeros(size, dtype=torch.bool)
    for p, tokens in sounds.items():
        if sound_words[p] > RICH:
            rich[tokens] = True
    other = ~(word_start | piece | banned)
    banned[newline] = True  # allowed back only where a line may end
    capital = piece & torch.tensor([t[:1].isupper() for t in texts])
    apostrophe = piece & torch.tensor([t[:1] == "'" for t in texts])
    not_end = torch.tensor([words.get(i) in NOT_END_WORDS for i in range(size)])
    return FormVocab(newline, word_start, word_syll, piece, piece_syll, capital, apostrophe, other, banned, end_punct,
                     rich, not_end, words, sounds, sound_words)  # fmt: skip


# ---- one line -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineRule:
    """What one line must do: `low`..`high` syllables, and end on a word `accepts` takes. `end_tokens` are the
    single-token words it takes, which the steering offers where they land the line inside the window."""

    low: int
    high: int
    accepts: Callable[[str], bool]
    end_tokens: torch.Tensor  # (V,) bool


def line_rule(vocab: FormVocab, form: Form, ends: Sequence[str | None]) -> LineRule:
    """The rule of the next line of a stanza, given the end words of the stanza's lines so far.

    A letter heard before must rhyme perfectly (form.rhyme) with the last line of its letter and repeat no end word
    of it; a new letter must rhyme with no other letter, and, if it comes back later, open a rhyme sound rich
    enough (see RICH) to be answered.
    """
    low, high = form.window()
    if not form.rhyme_scheme:
        return LineRule(low, high, lambda word: word not in NOT_END_WORDS, vocab.word_start & ~vocab.not_end)
    scheme, n = form.rhyme_scheme, len(ends)
    same = [e for e, letter in zip(ends, scheme, strict=False) if letter == scheme[n] and e]
    others = [e for e, letter in zip(ends, scheme, strict=False) if letter != scheme[n] and e]
    if same:
        target = same[-1]

        def accepts(word: str) -> bool:
            if word in NOT_END_WORDS or word in same:
                return False
            return in_dictionary(word) and rhyme(word, target).kind == "rhyme"

        tokens = [t for t in vocab.rhyming(target) if accepts(vocab.words[t])]
        mask = torch.zeros_like(vocab.word_start)
        mask[tokens] = True
        return LineRule(low, high, accepts, mask)
    comes_back = scheme[n] in scheme[n + 1 :]

    def accepts(word: str) -> bool:
        if word in NOT_END_WORDS or comes_back and not vocab.is_rich(word):
            return False
        return all(rhyme(word, o).kind not in ("rhyme", "identity") for o in others)

    mask = vocab.rich.clone() if comes_back else vocab.word_start & ~vocab.not_end
    for o in others:  # a shared rhyme part is a rhyme (or the same word)
        mask[vocab.rhyming(o)] = False
    return LineRule(low, high, accepts, mask)


class LineState(NamedTuple):
    syllables: int  # of the line so far
    may_end: bool  # on an accepted end word inside the window
    must_end: bool  # out of tokens, or the end word's punctuation mark is written
    at: str  # what the text ends with: "start" (nothing yet), "letter", "apostrophe" (a word with one), "other"
    long_word: bool  # the last word has MAX_PIECES pieces after its first token: it takes no more


class LineSteer(LogitsProcessor):
    """Steers candidate lines, sampled side by side, to a line break on an accepted end word inside the window.

    Per candidate and step (the line so far decoded, its syllables `s` counted with form.line_syllables):
    - a line break only where the line may end (its end word accepted, low <= s <= high), and forced at `high` or
      after one END_PUNCTUATION token there;
    - a new word only if it fits: an end token may take the line to `high`, any other word to `high - 1`, so an end
      word still fits after it; more letters of the last word likewise, punctuation while s < high;
    - the shape of written lyrics: a line starts with a capital and no space; letters go on with a word (one
      apostrophe at most, no capital inside); one punctuation mark at a time, after a word;
    - never a BANNED_CHARS token or the end of text.
    A candidate that runs out of moves, or of `budget` tokens, gets its line break anyway and loses the rerank.
    The mask depends on the line's state alone (LineState), so each state's is built once per line.
    """

    def __init__(self, tokenizer, vocab: FormVocab, rule: LineRule, prefix: str, start: int, budget: int) -> None:
        self.tokenizer, self.vocab, self.rule = tokenizer, vocab, rule
        self.prefix, self.start, self.budget = prefix, start, budget
        self.newline_only = torch.zeros_like(vocab.banned)
        self.newline_only[vocab.newline] = True
        self.masks: dict[LineState, torch.Tensor] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # input_ids (K, T), scores (K, V); a finished candidate's row is ignored by generate (it pads).
        return scores.masked_fill(~self.allowed(input_ids[:, self.start :].tolist()).to(scores.device), float("-inf"))

    def allowed(self, rows: list[list[int]]) -> torch.Tensor:
        """(K, V) bool: the tokens each candidate line may take next, given its new tokens so far."""
        masks = []
        for new in rows:
            state = self.state(new)
            if state not in self.masks:  # a line's states repeat: a few dozen masks serve all its candidates
                self.masks[state] = self.mask(state)
            masks.append(self.masks[state])
        return torch.stack(masks)

    def mask(self, st: LineState) -> torch.Tensor:
        """(V,) bool: the tokens a line in state `st` may take next."""
        v, r, s = self.vocab, self.rule, st.syllables
        if st.must_end:
            return self.newline_only
        if st.may_end and s >= r.high:
            return v.end_punctuation & ~v.banned | self.newline_only
        if st.at == "start":
            mask = v.capital & (v.piece_syllables + s <= r.high - 1)
        else:
            mask = v.word_start & (v.word_syllables + s <= r.high - 1)
            mask |= r.end_tokens & (v.word_syllables + s >= r.low) & (v.word_syllables + s <= r.high)
        if st.at in ("letter", "apostrophe") and not st.long_word:
            pieces = v.piece & ~v.capital & (v.piece_syllables + s <= r.high - 1)
            mask |= pieces & ~v.apostrophe if st.at == "apostrophe" else pieces
        if st.at in ("letter", "apostrophe"):
            mask |= v.other & (s < r.high)
        mask &= ~v.banned
        if st.may_end:
            return mask | v.end_punctuation & ~v.banned | self.newline_only
        return mask if mask.any() else self.newline_only

    def state(self, new: list[int]) -> LineState:
        r = self.rule
        text = self.prefix + self.tokenizer.decode(new)
        s = line_syllables(text)
        core = text.rstrip(END_MARKS)  # the line without the mark after its end word, if it has one
        last = end_word(core)
        may_end = r.low <= s <= r.high and core[-1:].isalpha() and last is not None and r.accepts(last)
        word = re.search(r"[\w']*$", text).group()
        if not text.strip():
            at = "start"
        elif not text[-1].isalpha():
            at = "other"
        else:
            at = "apostrophe" if "'" in word else "letter"
        pieces = 0
        while pieces < len(new) and self.vocab.piece[new[-1 - pieces]]:
            pieces += 1
        must_end = len(new) >= self.budget - 1 or may_end and core != text
        return LineState(s, may_end and core == text, must_end, at, pieces >= MAX_PIECES)


class TopKSampler(LogitsProcessor):
    """Samples one token per row as Sampling's temperature, top_k and top_p ask (transformers' warpers' arithmetic),
    and leaves only that token's logit finite, for generate's greedy pick.

    The same draw as generate's own sampling, cheaper for candidates side by side: the nucleus is cut and drawn
    among the top_k logits (torch.topk) instead of sorting and drawing over the whole vocabulary (with 8 rows and
    GPT-2's 50,257 tokens: ~0.6 ms against ~40 ms a step on one CPU core). top_k=0 sorts the whole vocabulary.
    """

    def __init__(self, temperature: float, top_k: int, top_p: float) -> None:
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature  # (K, V)
        if 0 < self.top_k < logits.shape[-1]:
            top, index = logits.topk(self.top_k)  # (K, k), sorted, best first
        else:
            top, index = logits.sort(descending=True)
        if self.top_p < 1.0:
            probs = top.softmax(-1)
            # Keep the smallest head whose probability reaches top_p: drop a token once the ones before it do.
            top = top.masked_fill(probs.cumsum(-1) - probs >= self.top_p, float("-inf"))
        choice = index.gather(-1, torch.multinomial(top.softmax(-1), 1))  # (K, 1)
        return torch.full_like(scores, float("-inf")).scatter_(-1, choice, 0.0)


class Line(NamedTuple):
    text: str  # the new text, without its line break
    kept_syllables: bool
    kept_rhyme: bool
    log_likelihood: float  # mean per token, line break included, under the model's raw logits


@torch.no_grad()
def sample_line(
    model: PreTrainedModel,
    tokenizer,
    vocab: FormVocab,
    ids: list[int],
    prefix: str,
    rule: LineRule,
    generation_config: GenerationConfig,
    candidates: int,
    budget: int,
    steer: bool = True,
) -> Line:
    """`candidates` lines after `ids`, steered (LineSteer) and re-ranked: the one that keeps the rule with the best
    log-likelihood; if none does, the one that keeps most of it. `prefix` is the line's text already in `ids`.
    `steer=False` re-ranks unsteered lines (for bench/form.py: what the steering adds)."""
    device = next(model.parameters()).device
    config = copy.deepcopy(generation_config)
    sampler = TopKSampler(config.temperature, config.top_k or 0, config.top_p or 1.0)
    # The line break is this call's end of sequence. TopKSampler draws each token (the user's temperature, top_k and
    # top_p), so generate picks greedily; its processors before ours (repetition_penalty, ...) are the user's.
    config.update(
        do_sample=False,
        temperature=None,
        top_k=None,
        top_p=None,
        num_return_sequences=1,
        max_new_tokens=budget,
        min_new_tokens=0,
        eos_token_id=vocab.newline,
        output_logits=True,
        return_dict_in_generate=True,
    )
    input_ids = torch.tensor([ids] * candidates, device=device)  # (K, T): the candidates side by side
    if not steer:
        # Only what no line may hold (the end of text, [tags], digits, ...); the line break ends the line.
        config.update(suppress_tokens=[t for t in vocab.banned.nonzero().flatten().tolist() if t != vocab.newline])
    steering = [LineSteer(tokenizer, vocab, rule, prefix, len(ids), budget)] if steer else []
    out = model.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=config,
        logits_processor=LogitsProcessorList([*steering, sampler]),
    )
    new = out.sequences[:, len(ids) :]  # (K, steps)
    # The log-probability of each token drawn under the raw logits (unsteered, untempered): (K, steps)
    token_logp = torch.stack(
        [(x.gather(-1, new[:, i, None]) - x.logsumexp(-1, keepdim=True))[:, 0] for i, x in enumerate(out.logits)], 1
    ).float()
    found = []
    for k, row in enumerate(new.tolist()):
        ended = vocab.newline in row
        length = row.index(vocab.newline) + 1 if ended else len(row)
        found.append((tokenizer.decode(row[: length - ended]), ended, token_logp[k, :length].mean().item()))
    return choose_line(found, prefix, rule)


def choose_line(found: Sequence[tuple[str, bool, float]], prefix: str, rule: LineRule) -> Line:
    """The candidate (text, ended at a line break, mean log-likelihood) that keeps `rule` with the best likelihood;
    if none keeps all of it, the likeliest of those that keep most (a line that ran out of tokens keeps nothing)."""
    best: tuple | None = None
    for text, ended, log_likelihood in found:
        full = prefix + text
        word = end_word(full)
        line = Line(
            text,
            kept_syllables=ended and rule.low <= line_syllables(full) <= rule.high,
            kept_rhyme=ended and word is not None and rule.accepts(word),
            log_likelihood=log_likelihood,
        )
        key = (line.kept_syllables + line.kept_rhyme, log_likelihood)
        if best is None or key > best[0]:
            best = (key, line)
    return best[1]


# ---- a song -------------------------------------------------------------------------------------------------------


def part_tags(parts: Sequence[str]) -> list[str]:
    """Section tags as the builtin sample writes them: [Verse 1], [Chorus], [Verse 2], [Pre-Chorus], [Bridge]."""
    numbered = {p for p in parts if parts.count(p) > 1 and p not in REPEATED_PARTS}
    seen: dict[str, int] = {}
    tags = []
    for p in parts:
        seen[p] = seen.get(p, 0) + 1
        name = "-".join(w.capitalize() for w in p.split("-"))
        tags.append(f"[{name} {seen[p]}]" if p in numbered else f"[{name}]")
    return tags


@torch.no_grad()
def writes_tags(model: PreTrainedModel, tokenizer, text_in: str) -> bool:
    """Whether the model heads a stanza with a section tag ([Verse 1]) after `text_in` at the start of a song: its
    first token ("[") has at least TAG_PROBABILITY. A song without structure= is tagged [Verse 1], [Verse 2], ...
    when its model was trained on tagged lyrics (the builtin sample: 0.5), so it need not fight its own habit."""
    ids = song_ids(tokenizer, text_in)
    [bracket, *_] = tokenizer("[Verse", add_special_tokens=False)["input_ids"]
    logits = model(torch.tensor([ids], device=next(model.parameters()).device)).logits[0, -1]
    return logits.float().softmax(-1)[bracket].item() >= TAG_PROBABILITY


def line_budget(form: Form) -> int:
    """New tokens a candidate line may take: ~1.3 tokens per syllable in English lyrics, with room to spare."""
    return 2 * form.window()[1] + 8


def line_seed(seed: int, sample: int, line: int) -> int:
    """The seed of one line of one song: same seed, same song, whatever other songs are sampled around it."""
    return hash((seed, sample, line)) % 2**63


def write_song(
    model: PreTrainedModel,
    tokenizer,
    text_in: str,
    form: Form,
    generation_config: GenerationConfig,
    seed: int,
    sample: int = 0,
    on_text: Callable[[str], None] | None = None,
    steer: bool = True,
) -> str:
    """The new text of a song that keeps `form`, continuing `text_in` (the prompt with its header).

    Lines of the prompt before its last line break are kept as given, before the form; text after it begins the
    first line. With a structure each stanza is headed by its tag ([Verse 1], [Chorus]); a repeated part is copied
    word for word. When the song outgrows the model's context, the model sees its last tokens. `on_text` receives
    each piece of new text as it is chosen (streaming).
    """
    vocab = form_vocab(tokenizer)
    budget = line_budget(form)
    context = getattr(model.config, "max_position_embeddings", None)
    keep = (context - budget) if isinstance(context, int) else None
    prefix = "" if text_in.endswith("\n") or not text_in else text_in.rsplit("\n", 1)[-1]
    parts = form.parts()
    fresh = not prefix  # the first stanza starts on a line of its own
    tagged = form.structure or writes_tags(model, tokenizer, text_in if fresh else "")
    tags = part_tags(parts) if tagged else [None] * len(parts)
    written: dict[str, str] = {}
    completion = ""  # the new text so far, each line with its line break
    line_no = shown = 0

    def add(piece: str) -> None:
        nonlocal completion, shown
        completion += piece
        # Line breaks are passed on with the text after them: a streamed song ends on its last word, as its text.
        upto = len(completion.rstrip("\n"))
        if on_text is not None and upto > shown:
            on_text(completion[shown:upto])
            shown = upto

    for k, (part, tag) in enumerate(zip(parts, tags, strict=True)):
        if k:
            add("\n")  # a blank line between stanzas
        if tag and not (k == 0 and prefix):
            add(tag + "\n")
        if part in written:
            add(written[part])
            continue
        stanza_start = len(completion)
        ends: list[str | None] = []
        for _ in range(form.lines_per_stanza()):
            rule = line_rule(vocab, form, ends)
            ids = song_ids(tokenizer, text_in + completion)
            torch.manual_seed(line_seed(seed, sample, line_no))
            line = sample_line(
                model, tokenizer, vocab, ids[-keep:] if keep else ids, prefix, rule, generation_config,
                form.candidates, budget, steer,
            )  # fmt: skip
            ends.append(end_word(prefix + line.text))
            add(line.text + "\n")
            prefix, line_no = "", line_no + 1
        if part in REPEATED_PARTS:
            written[part] = completion[stanza_start:]
    return completion.rstrip("\n")


# ---- measuring ----------------------------------------------------------------------------------------------------


def form_kept(text: str, form: Form) -> dict[str, Any]:
    """How closely a song keeps `form`, measured on its text alone (any song: the bench scores free ones too).

    - `rhyme_pairs`: line pairs the scheme asks to rhyme (each line with the last line of its letter in its group
      of len(scheme) lines of a stanza) whose end words are both in the dictionary; `rhyme_pair_share`: the share of
      them that rhyme perfectly (form.rhyme); None without a scheme or a judged pair.
    - `syllables_kept_share`: share of lyric lines within syllables +- syllable_tolerance (None without syllables).
    - `stanza_lines` and `stanza_schemes`: each stanza's line count and rhyme scheme (form.rhyme_scheme).
    """
    song = stanzas(text)
    lines = [ln for stanza in song for ln in stanza]
    judged = rhymed = 0
    if form.rhyme_scheme:
        scheme = form.rhyme_scheme
        for stanza in song:
            for g in range(0, len(stanza), len(scheme)):
                ends = [end_word(ln) for ln in stanza[g : g + len(scheme)]]
                for i, e in enumerate(ends):
                    j = next((j for j in range(i - 1, -1, -1) if scheme[j] == scheme[i]), None)
                    if j is None or not (e and ends[j] and in_dictionary(e) and in_dictionary(ends[j])):
                        continue
                    judged += 1
                    rhymed += rhyme(ends[j], e).kind == "rhyme"
    kept = None
    if form.syllables is not None and lines:
        kept = sum(abs(line_syllables(ln) - form.syllables) <= form.syllable_tolerance for ln in lines) / len(lines)
    return {
        "rhyme_pairs": judged,
        "rhymed_pairs": rhymed,
        "rhyme_pair_share": rhymed / judged if judged else None,
        "syllables_kept_share": kept,
        "stanza_lines": [len(s) for s in song],
        "stanza_schemes": [rhyme_scheme(s) for s in song],
    }


def measured_form(text: str, form: Form) -> dict[str, Any]:
    """The JSON record's `form_measured`: `form_kept` and the song's form metrics (form.song_form)."""
    metrics = {k: v for k, v in song_form(text).items() if k != "songs"}
    return {**form_kept(text, form), **metrics}


def form_summary(measured: dict) -> str:
    """`rhyme 7/8 pairs, syllables 92% of lines` for a song that keeps a form (see form_kept)."""
    parts = []
    if measured["rhyme_pair_share"] is not None:
        parts.append(f"rhyme {measured['rhymed_pairs']}/{measured['rhyme_pairs']} pairs")
    if measured["syllables_kept_share"] is not None:
        parts.append(f"syllables {measured['syllables_kept_share']:.0%} of lines")
    return ", ".join(parts) or f"{len(measured['stanza_lines'])} stanzas"
