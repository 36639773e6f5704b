from lyric_lm.markdown import replace_section


def test_a_benchmark_rewrites_its_own_section_and_keeps_the_others(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    replace_section(path, "<!-- a -->", "<!-- /a -->", "<!-- a -->\nA1\n<!-- /a -->")
    replace_section(path, "<!-- b -->", "<!-- /b -->", "<!-- b -->\nB1\n<!-- /b -->")
    replace_section(path, "<!-- a -->", "<!-- /a -->", "<!-- a -->\nA2\n<!-- /a -->")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "A2" in text
    assert "A1" not in text
    assert text.index("A2") < text.index("B1")  # rewritten in place, not appended
