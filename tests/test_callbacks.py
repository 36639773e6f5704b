"""SampleLyrics: songs at each validation, in TensorBoard's text tab and <run>/samples/."""

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lyric_lm.songs.samples import samples_markdown


def test_each_validation_writes_samples_to_tensorboard_and_markdown(tiny_run):
    # One validation (at step 3); the sanity check before training writes nothing.
    assert sorted(p.name for p in (tiny_run / "samples").iterdir()) == ["step_000003.md"]
    page = (tiny_run / "samples" / "step_000003.md").read_text()
    assert page.startswith("## Samples at step 3")
    assert page.count("```text\n") == 2  # the two configured prompts: "" and "[Chorus]\n"
    assert "```text\n[Chorus]\n" in page

    events = EventAccumulator(str(tiny_run / "tensorboard"), size_guidance={"tensors": 0})
    events.Reload()
    texts = events.Tensors("samples/text_summary")
    assert [t.step for t in texts] == [3]
    assert texts[0].tensor_proto.string_val[0].decode() == page


def test_markdown_keeps_line_breaks_in_fenced_blocks():
    rec = {"prompt": "", "prompt_seed": 1, "ended": False, "max_new_tokens": 8, "text": "one line\nnext line"}
    page = samples_markdown([rec], step=10, epoch=1)
    assert "```text\none line\nnext line\n```" in page
    assert "cut at 8 tokens" in page
