"""Each cleaning rule on, and off; the drop reasons, dedupe, filters and the summary line."""

import pytest
from datasets import Dataset

from lyric_lm.data.cleaning import CleanOptions, clean_songs, clean_text, summary_line
from lyric_lm.errors import LyricLMError

ON = CleanOptions()


@pytest.mark.parametrize(
    ("switch", "raw", "cleaned_on", "cleaned_off"),
    [
        ("line_endings", "\ufeffone  \r\ntwo\rthree", "one\ntwo\nthree", "\ufeffone  \r\ntwo\rthree"),
        ("unicode", "cafe\u0301", "caf\u00e9", "cafe\u0301"),  # NFC composes e + combining accent
        ("boilerplate", "walk on\nhome42Embed", "walk on\nhome", "walk on\nhome42Embed"),
        ("boilerplate", "3 ContributorsSalt Road Lyrics[Verse]\nwalk", "[Verse]\nwalk", None),
        ("boilerplate", "walk on\nYou might also like[Chorus]\nhome", "walk on\n[Chorus]\nhome", None),
        ("collapse_blank_lines", "one\n\n\n\n\ntwo\nthree", "one\n\ntwo\nthree", "one\n\n\n\n\ntwo\nthree"),
    ],
)
def test_each_text_rule_applies_when_on_and_not_when_off(switch, raw, cleaned_on, cleaned_off):
    assert clean_text(raw, ON) == cleaned_on
    if cleaned_off is not None:
        off = CleanOptions(**{switch: None if switch == "unicode" else False})
        assert clean_text(raw, off) == cleaned_off


def test_section_tags_kept_by_default_and_dropped_on_request():
    raw = "[Verse 1]\nwalk on\n\n[Chorus: Ada]\nhome again\n[Bridge] sing it"
    assert clean_text(raw, ON) == raw
    assert clean_text(raw, CleanOptions(section_tags=False)) == "walk on\n\nhome again\nsing it"


def test_stanza_and_line_breaks_survive_cleaning():
    raw = "line one\nline two\n\nline three\r\n\r\n\r\nline four\n"
    assert clean_text(raw, ON) == "line one\nline two\n\nline three\n\nline four"


def songs(*texts, languages=None):
    n = len(texts)
    return Dataset.from_dict(
        {
            "text": list(texts),
            "title": [f"t{i}" for i in range(n)],
            "artist": [None] * n,
            "genre": [None] * n,
            "language": languages or [None] * n,
        }
    )


def test_drops_are_counted_by_reason_and_duplicates_keep_the_first():
    ds = songs("walk on", None, "  ", "NA", "[Instrumental]", "walk on", "walk on\r\n", "rise up", "x" * 50)
    kept, counts = clean_songs(ds, ON, max_chars=40)
    assert kept["text"] == ["walk on", "rise up"]
    assert kept["title"] == ["t0", "t7"]  # input order, first copy of the duplicate
    assert counts == {
        "read": 9,
        "kept": 2,
        "empty": 2,
        "NA": 1,
        "instrumental": 1,
        "duplicate": 2,  # "walk on\r\n" is a duplicate once cleaned
        "too long": 1,
    }
    line = summary_line(counts, "lyrics.csv")
    assert line == (
        "read 9 songs from lyrics.csv, kept 2, dropped 7 (empty 2, NA 1, instrumental 1, too long 1, duplicate 2)"
    )


def test_switching_off_drops_keeps_those_rows():
    ds = songs("walk on", "walk on", "NA")
    kept, _ = clean_songs(ds, CleanOptions(dedupe=False, drop_empty=False))
    assert kept["text"] == ["walk on", "walk on", "NA"]


def test_min_chars_max_songs_and_language():
    ds = songs("hi", "walk on home", "rise up now", "sing it loud", languages=["en", "en", "es", "EN"])
    kept, counts = clean_songs(ds, ON, min_chars=5, language="en", max_songs=1)
    assert kept["text"] == ["walk on home"]
    assert counts["too short"] == 1
    assert counts["language"] == 1
    assert counts["over max_songs"] == 1


def test_language_filter_without_language_column_is_a_user_error():
    with pytest.raises(LyricLMError, match="data.language=en needs a language column"):
        clean_songs(songs("walk on"), ON, language="en")


def test_every_row_dropped_is_a_user_error_with_the_reasons():
    with pytest.raises(LyricLMError, match=r"every row of x.csv was dropped by cleaning \(empty 1, NA 2\)"):
        clean_songs(songs("", "NA", "n/a"), ON, where="x.csv")


def test_unknown_clean_option_is_a_user_error():
    with pytest.raises(LyricLMError, match="data.clean has no option tidy"):
        CleanOptions.from_config({"tidy": True})
