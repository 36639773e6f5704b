"""bench/throughput.py: its FLOP count, its BENCHMARKS.md section, and one JSON line per contender (not timed)."""

import argparse
import importlib.util
import json
import time

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from tests.conftest import ROOT, run_script

spec = importlib.util.spec_from_file_location("throughput", ROOT / "bench" / "throughput.py")
throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(throughput)


@pytest.mark.parametrize("shape", ["tiny", "gpt2"])
def test_flops_per_token_counts_the_real_parameters(shape):
    n_layer, n_embd, n_head, n_pos = throughput.SHAPES[shape]
    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(
            GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_pos)
        )
    params = sum(p.numel() for p in lm.parameters()) - lm.transformer.wpe.weight.numel()  # wte counted once (tied)
    assert throughput.flops_per_token(shape, 0) == 6 * params
    if shape == "gpt2":
        assert 124.3e6 < params + lm.transformer.wpe.weight.numel() < 124.5e6  # GPT-2's published 124M


def test_markdown_section_is_replaced_and_other_sections_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(f"# Benchmarks\n\n{throughput.BEGIN}\nold figures\n{throughput.END}\n\n## data_scale\nkept\n")
    row = {
        "impl": "plain_loop", "model": "tiny", "precision": "32-true", "tokens_per_s": 1000.0,
        "optimizer_steps_per_s": 1.95, "ratio_to_plain_loop": 1.0, "mfu": 0.4, "mfu_vs_fp32_peak": 0.4,
        "mfu_vs_bf16_peak": 0.1, "peak_rss_mb": 900, "data_wait_share": 0.001, "malloc": "default",
    }  # fmt: skip
    meta = {"peaks_gflops": {"32-true": 200.0, "bf16-mixed": 800.0}, "load_before": 0.5, "load_after": 0.7}
    meta["rounds"], meta["steps"] = {"tiny": 8, "gpt2": 3}, {"tiny": 16, "gpt2": 6}  # a full run's ROUNDS, STEPS
    a = argparse.Namespace(batch=4, block=128, accum=1, malloc="tuned", rounds=None, steps=None, warmup=2)
    throughput.write_markdown([row], meta, a, "python bench/throughput.py", path)
    text = path.read_text()
    assert "medians of 8 rounds (tiny), 3 rounds (gpt2) x 16 steps (tiny), 6 steps (gpt2) after 2 warm-up" in text
    assert "old figures" not in text
    assert "| tiny | 32-true | plain_loop | default | 1000 | 1.95 | 1.00x | 40% |" in text
    assert text.endswith("## data_scale\nkept\n")
    assert text.count(throughput.BEGIN) == 1


def test_each_contender_runs_with_its_own_allocator_unless_one_is_forced():
    def malloc(impl, setting="shipped"):
        return throughput.malloc_of(impl, setting)

    # As shipped: a tutorial loop and HF Trainer get glibc as it comes; lyric_lm_best its config's tuning.
    assert [malloc(i) for i in throughput.CONTENDERS] == ["default", "default", "tuned", "default"]
    assert malloc("plain_loop+malloc") == "tuned"  # the control: the allocator's share of the lead
    assert all(malloc(i, "default") == "default" for i in throughput.ALL_IMPLS)
    args = throughput.worker_args("lyric_lm_best+chunk", "shipped")
    assert args[:2] == ["--worker", "lyric_lm_best"]
    assert args[-2:] == ["--set", "model.loss_chunk=128"]


def test_targets_report_lightnings_overhead_with_and_without_the_allocator_tuning():
    def row(impl, tokens_per_s, ratio, rss=1000):
        return {"model": "tiny", "precision": "bf16-mixed", "impl": impl, "tokens_per_s": tokens_per_s,
                "ratio_to_plain_loop": ratio, "peak_rss_mb": rss, "data_wait_share": 0.01}  # fmt: skip

    rows = [row("plain_loop", 2000, 1.0), row("lyric_lm", 1900, 0.95), row("plain_loop+malloc", 4000, 2.0)]
    rows.append(row("lyric_lm+malloc", 3960, 1.98))
    lines = throughput.target_lines(rows, {"peaks_gflops": {"32-true": 300, "bf16-mixed": 1800}})
    off = "- tiny bf16-mixed: lyric_lm, every speed option off, 0.95x plain_loop (target >= 0.97x: **not met**)"
    assert off in lines
    tuned = next(line for line in lines if "allocator tuned on both sides" in line)
    assert "0.99x (target >= 0.97x: met)" in tuned
    assert lines[-1].startswith("- data wait, largest lyric_lm row: 1.00%")


def test_targets_report_the_time_lightning_adds_outside_the_models_passes():
    def row(impl, outside_ms, malloc):
        return {"model": "tiny", "precision": "bf16-mixed", "impl": impl, "tokens_per_s": 2560.0, "batch": 4,
                "block": 128, "accum": 1, "ratio_to_plain_loop": 1.0, "peak_rss_mb": 1000, "data_wait_share": 0.01,
                "malloc": malloc, "outside_passes_s_per_step": outside_ms / 1000}  # fmt: skip

    rows = [row("plain_loop", 30.0, "default"), row("lyric_lm", 37.0, "default")]
    rows += [row("plain_loop+malloc", 20.0, "tuned"), row("lyric_lm+malloc", 22.0, "tuned")]
    lines = throughput.target_lines(rows, {"peaks_gflops": {"32-true": 300, "bf16-mixed": 1800}})
    added = [line for line in lines if "Lightning adds" in line]
    assert len(added) == 2  # with glibc's defaults, and with the allocator tuned on both sides
    assert "lyric_lm 37.0 ms against plain_loop 30.0 ms: Lightning adds +7.0 ms, +3.5%" in added[0]
    assert added[0].endswith("of the plain loop's 200 ms step (target <= 3%: **not met**)")
    assert "Lightning adds +2.0 ms, +1.0%" in added[1]
    assert added[1].endswith("(target <= 3%: met)")


def test_model_clock_times_the_passes_and_not_the_loop_around_them():
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, n_positions=16, vocab_size=64))
    clock = throughput.ModelClock(lm)
    batch = torch.randint(0, 64, (2, 16))
    with torch.no_grad():
        lm(input_ids=batch, labels=batch)  # no graph: a forward pass, and no backward to wait for
    start, marked = time.perf_counter(), clock.mark()
    for _ in range(2):
        time.sleep(0.05)  # the loop's own work, which the clock must leave out
        lm(input_ids=batch, labels=batch).loss.backward()
    passes, elapsed = clock.mark() - marked, time.perf_counter() - start
    assert clock.forward > 0
    assert clock.backward > 0
    assert 0 < passes <= elapsed - 0.1


def test_rounds_run_each_contender_before_and_after_the_plain_loop_equally_often():
    names = list(throughput.CONTENDERS) + list(throughput.CONTROLS)
    orders = [throughput.round_order(names, r) for r in range(8)]
    assert all(sorted(o) == sorted(names) for o in orders)
    for other in names[1:]:
        before = sum(o.index("plain_loop") < o.index(other) for o in orders)
        assert before == 4, other  # of 8 rounds


def test_loss_tolerance_is_on_moving_means():
    fp32 = [11.0 - 0.1 * i for i in range(50)]
    lagging = [fp32[0], *fp32[:-1]]  # bf16 one step behind: 0.1 nats (~1-2%) per step
    assert throughput.compare_curves(fp32, lagging)["within_tolerance"]
    assert not throughput.compare_curves(fp32, [x * 1.05 for x in fp32])["within_tolerance"]
    assert throughput.compare_curves(fp32, fp32)["max_abs_diff"] == 0


@pytest.mark.slow
def test_cli_prints_one_json_line_per_contender_and_leaves_benchmarks_md(tmp_path):
    before = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").exists() else None
    proc = run_script(
        ROOT / "bench" / "throughput.py",
        *["--model", "tiny", "--precision", "32-true", "--rounds", "1", "--warmup", "1", "--steps", "1"],
        *["--no-loss-check", "--no-write", "--no-controls"],
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"impl"')]
    assert sorted(r["impl"] for r in rows) == sorted(throughput.CONTENDERS)
    for r in rows:
        assert r["model"] == "tiny"
        assert r["precision"] == "32-true"
        assert r["tokens_per_s"] > 0
        assert r["mfu"] > 0  # against a peak measured in the same busy run: no upper bound (a timing)
        assert r["peak_rss_mb"] > 100
        assert 0 <= r["data_wait_share"] < 1
    assert next(r for r in rows if r["impl"] == "plain_loop")["ratio_to_plain_loop"] == 1.0
    after = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").exists() else None
    assert after == before
