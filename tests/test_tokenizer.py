from lyric_lm.tokenizer import bundled_gpt2_tokenizer, load_tokenizer


def test_bundled_tokenizer_is_gpt2():
    tok = bundled_gpt2_tokenizer()
    assert tok("Hello world").input_ids == [15496, 995]
    assert len(tok) == 50257
    assert tok.eos_token_id == tok.pad_token_id == 50256


def test_roundtrip_keeps_line_breaks_and_accents():
    tok = bundled_gpt2_tokenizer()
    text = "[Chorus]\nOh the café lights,\n\n  burning low"
    assert tok.decode(tok(text).input_ids) == text


def test_gpt2_hub_ids_use_bundled_vocab_offline():
    # gpt2 .. gpt2-xl share one vocabulary; no hub access is needed (the test env has none).
    assert load_tokenizer("gpt2-medium")("Hello world").input_ids == [15496, 995]
