"""Training throughput of lyric_lm against a plain PyTorch loop and Hugging Face Trainer, measured side by side.

    python bench/throughput.py                         # full: tiny + gpt2, 32-true + bf16-mixed; writes BENCHMARKS.md
    python bench/throughput.py --model gpt2 --quick    # < 3 minutes: gpt2 shape, auto precision, 2 rounds; prints only

Contenders, all on the same packed tokens of the builtin sample (GPT-2 tokenizer), the same model shape (random
init), batch, block size, accumulation, precision, AdamW + warmup-linear schedule and clipping at 1.0:
  plain_loop     the tutorial loop: move batch, forward, backward, clip + step every k batches, zero grads
  lyric_lm       our pipeline.train (Hydra config, LyricsDataModule, Lightning) with every speed option off,
                 the allocator tuning (speed.tune_malloc) included
  lyric_lm_best  the same with the trainer=cpu preset as shipped (allocator tuning, fused AdamW clipping in its
                 kernel, fused GELU, fast dropout, sparse embedding gradient)
  hf_trainer     transformers.Trainer with its defaults (which pick fused AdamW on torch >= 2.8)
The full run adds controls, to tell the levers apart (plain_loop+malloc, lyric_lm_best-fast_ops and lyric_lm+malloc
at every setting, the other two at the precision trainer=cpu picks):
  plain_loop+malloc      the plain loop with the same glibc tuning lyric_lm_best ships: the allocator's share
  lyric_lm_best-fast_ops the preset without its CPU model options (speed.fused_gelu, speed.fast_dropout and
                         speed.sparse_embedding_grad): what those three are worth
  lyric_lm+malloc        lyric_lm with only the allocator tuning on; against plain_loop+malloc, Lightning's overhead
                         alone (with glibc's defaults, page faults take half of each step and vary between processes)
  lyric_lm_best+chunk    the preset plus the chunked vocabulary loss (model.loss_chunk=128)
  lyric_lm_best+compile  the preset plus torch.compile (speed.compile=true)
Allocator (`--malloc shipped`, the default): each contender as its authors ship it, i.e. glibc's defaults for the
plain loop and HF Trainer, `speed.tune_malloc` as the config says for lyric_lm; `--malloc tuned|default` forces one
setting on all.

Each run is a fresh subprocess (honest peak RSS and allocator state); rounds alternate the contenders, in a rotated
order that is reversed every other round, so load on a shared machine, and any drift, falls on all of them alike;
reported figures are medians over rounds of the median optimizer-step time after warm-up (start-up excluded). Full
runs take 3 rounds of 6 measured steps at the gpt2 shape and 8 rounds of 16 at the tiny one, whose 0.1-0.3 s steps
differ more between processes (+-4-10%) than a 124M step does; a tiny run costs seconds.
One JSON line per contender and setting on stdout. Besides speed, MFU, peak RSS and data wait, each has the page
faults and kernel CPU seconds per step (getrusage): with glibc's default allocator, the kernel time of re-faulting
freed memory is what differs most between processes, and between lyric_lm and the plain loop (BENCHMARKS.md).
The plain loop, lyric_lm (options off) and HF Trainer also time the model's forward and backward passes with the
same hooks (ModelClock); the time per step outside them, lyric_lm's minus the plain loop's, is what Lightning adds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTENDERS = ("plain_loop", "lyric_lm", "lyric_lm_best", "hf_trainer")
# name: (worker, allocator under --malloc shipped, extra Hydra overrides); the controls run in full runs only
CONTROLS = {
    "plain_loop+malloc": ("plain_loop", "tuned", []),
    "lyric_lm_best-fast_ops": (
        "lyric_lm_best",
        "preset",
        ["speed.fused_gelu=false", "speed.fast_dropout=false", "speed.sparse_embedding_grad=false"],
    ),
    "lyric_lm+malloc": ("lyric_lm", "tuned", []),
    "lyric_lm_best+chunk": ("lyric_lm_best", "preset", ["model.loss_chunk=128"]),
    "lyric_lm_best+compile": ("lyric_lm_best", "preset", ["speed.compile=true"]),
}
# controls run at each precision, not just the preset's
EVERY_SETTING = ("plain_loop+malloc", "lyric_lm_best-fast_ops", "lyric_lm+malloc")
SHIPPED_MALLOC = {"plain_loop": "default", "lyric_lm": "default", "lyric_lm_best": "preset", "hf_trainer": "default"}
ALL_IMPLS = CONTENDERS + tuple(CONTROLS)
LOSS_WINDOW, LOSS_TOLERANCE = 10, 0.02  # bf16 vs fp32: 10-step moving means within 2% at every step
# (layers, width, heads, positions): conf/model/tiny.yaml, and GPT-2 124M
SHAPES = {"tiny": (2, 128, 4, 256), "gpt2": (12, 768, 12, 1024)}
ROUNDS = {"tiny": 8, "gpt2": 3}  # full runs; --rounds N (and --quick: 2) sets one count for every shape
# Measured optimizer steps per run (full runs; --steps N, and --quick: 3, set one count). A tiny step's median over 6
# steps moved by +-5% between runs of one contender; 16 steps stay within the sample's 21 batches per epoch.
STEPS = {"tiny": 16, "gpt2": 6}
LR, WEIGHT_DECAY, WARMUP_STEPS, SEED = 1e-4, 0.01, 2, 42
BEGIN, END = "<!-- BEGIN throughput -->", "<!-- END throughput -->"


# ---------------------------------------------------------------- measurement inside one worker process


def tune_malloc_if(setting: str) -> None:
    """plain_loop and hf_trainer: the allocator the run asks for (lyric_lm workers set it through the config)."""
    if setting == "tuned":  # before torch allocates anything large; same call as train.py's speed.tune_malloc
        sys.path.insert(0, str(ROOT))
        from lyric_lm.speed.allocator import tune_malloc

        tune_malloc()


def packed_blocks(block_size: int):
    """The builtin sample, tokenized and packed by LyricsDataModule: the tokens every contender trains on."""
    from lyric_lm.data import LyricsDataModule
    from lyric_lm.tokenizer import bundled_gpt2_tokenizer

    dm = LyricsDataModule(bundled_gpt2_tokenizer(), block_size=block_size)
    dm.setup()
    return dm.blocks["train"]


def random_model(shape: str):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    n_layer, n_embd, n_head, n_positions = SHAPES[shape]
    torch.manual_seed(SEED)
    return AutoModelForCausalLM.from_config(
        GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=n_positions)
    )


def kernel_work() -> tuple[int, float]:
    """This process's page faults that needed no disk (memory mapped in, or zeroed, again) and its CPU seconds in the
    kernel, so far (getrusage): with glibc's default allocator, most of a step's kernel time is those faults."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


class ModelClock:
    """Seconds spent in the model's forward and backward passes, timed by the same hooks in the plain loop, lyric_lm
    and HF Trainer: forward from the model's forward pre-hook to its forward hook; backward from the gradient
    reaching the loss to the last parameter's gradient being accumulated. The rest of a step (clipping and the AdamW
    step, the same code in all three, plus each loop's own work: fetching the batch, hooks, logging, zeroing
    gradients) is what a training framework adds to, so lyric_lm's rest minus the plain loop's is Lightning's
    overhead, apart from the page faults of glibc's default allocator, which land in the passes. Not on the
    lyric_lm_best workers (compiled graphs, the chunked loss and the sparse embedding gradient bypass these hooks)."""

    def __init__(self, model) -> None:
        self.forward = self.backward = 0.0
        self._forward_start = self._backward_start = self._last_grad = None
        model.register_forward_pre_hook(self._on_forward_start)
        model.register_forward_hook(self._on_forward_end)
        for p in model.parameters():
            if p.requires_grad:
                p.register_post_accumulate_grad_hook(self._on_grad)

    def _on_forward_start(self, module, args) -> None:
        self._close_backward()
        self._forward_start = time.perf_counter()

    def _on_forward_end(self, module, args, output) -> None:
        self.forward += time.perf_counter() - self._forward_start
        loss = getattr(output, "loss", None)
        if loss is not None and loss.requires_grad:
            loss.register_hook(self._on_backward_start)

    def _on_backward_start(self, grad) -> None:
        self._backward_start = time.perf_counter()

    def _on_grad(self, param) -> None:
        self._last_grad = time.perf_counter()

    def _close_backward(self) -> None:
        if self._backward_start is not None and self._last_grad is not None:
            self.backward += max(0.0, self._last_grad - self._backward_start)
        self._backward_start = None

    def mark(self) -> float:
        """Forward + backward seconds so far (at an optimizer step's start: the last backward has ended)."""
        self._close_backward()
        return self.forward + self.backward


def summarize(
    starts: list[float],
    ends: list[float],
    losses: list[float],
    a: argparse.Namespace,
    kernel: list[tuple],
    passes: list[float] | None = None,
) -> dict:
    """Per optimizer step i: period = start[i+1] - start[i]; data wait = start[i+1] - end[i] (the loop's own
    work outside the step too, so an upper bound); page faults and kernel CPU seconds (all threads) between the two
    starts; with `passes` (ModelClock.mark() at each start), the seconds outside the forward and backward passes.
    Medians over the steps after warm-up."""
    periods = [s1 - s0 for s0, s1 in zip(starts, starts[1:], strict=False)][a.warmup :]
    waits = [s1 - e0 for e0, s1 in zip(ends, starts[1:], strict=False)][a.warmup :]
    per_step = [(k1[0] - k0[0], k1[1] - k0[1]) for k0, k1 in zip(kernel, kernel[1:], strict=False)][a.warmup :]
    period = statistics.median(periods)
    out = {
        "step_s": period,
        "page_faults_per_step": statistics.median(f for f, _ in per_step),
        "kernel_s_per_step": statistics.median(t for _, t in per_step),
        "data_wait_share": sum(waits) / sum(periods),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "losses": losses,
        "measured_steps": len(periods),
    }
    if passes:
        in_passes = [p1 - p0 for p0, p1 in zip(passes, passes[1:], strict=False)][a.warmup :]
        out["passes_s_per_step"] = statistics.median(in_passes)
        out["outside_passes_s_per_step"] = statistics.median(t - p for t, p in zip(periods, in_passes, strict=True))
    return out


def run_plain_loop(a: argparse.Namespace) -> dict:
    import torch
    from torch.utils.data import DataLoader
    from transformers import get_linear_schedule_with_warmup

    from lyric_lm.data.packing import collate_blocks

    torch.manual_seed(SEED)
    model = random_model(a.model).train()
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0}])
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] = LR
    total = a.warmup + a.steps + 1
    sched = get_linear_schedule_with_warmup(opt, WARMUP_STEPS, total)
    loader = DataLoader(packed_blocks(a.block), batch_size=a.batch, shuffle=True, collate_fn=collate_blocks)
    bf16 = a.precision == "bf16-mixed"
    clock, passes = ModelClock(model), []
    starts, ends, losses, kernel, step, i = [], [], [], [], 0, 0
    while step < total:
        for batch in loader:
            if i % a.accum == 0:
                starts.append(time.perf_counter())
                kernel.append(kernel_work())
                passes.append(clock.mark())
            batch = {k: v.to("cpu") for k, v in batch.items()}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(**batch).loss / a.accum
            loss.backward()
            i += 1
            if i % a.accum == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                opt.zero_grad()
                losses.append(loss.item() * a.accum)
                ends.append(time.perf_counter())
                step += 1
                if step == total:
                    break
    return summarize(starts, ends, losses, a, kernel, passes)


def run_lyric_lm(a: argparse.Namespace, best: bool) -> dict:
    import lightning as L
    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lyric_lm.pipeline import train

    starts, ends, losses, kernel, passes = [], [], [], [], []
    sync = torch.cuda.synchronize if a.device == "gpu" else lambda: None  # time the GPU's work, not its queueing
    clock = []  # lyric_lm (options off) on CPU only: ModelClock's doc says why; a GPU runs its passes asynchronously

    class StepTimer(L.Callback):
        def on_train_start(self, trainer, pl_module):
            if not best and a.device == "cpu":
                clock.append(ModelClock(pl_module.model))

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx % a.accum == 0:
                sync()
                starts.append(time.perf_counter())
                kernel.append(kernel_work())
                if clock:
                    passes.append(clock[0].mark())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if (batch_idx + 1) % a.accum == 0:
                ends.append(time.perf_counter())
                losses.append(float(outputs["loss"]) * a.accum)

    n_layer, n_embd, n_head, n_positions = SHAPES[a.model]
    overrides = [
        "model=gpt2",
        "model.from_scratch=true",
        f"+model.config={{n_layer: {n_layer}, n_embd: {n_embd}, n_head: {n_head}, n_positions: {n_positions}}}",
        f"data.block_size={a.block}",
        f"data.batch_size={a.batch}",
        f"optim.lr={LR}",
        f"optim.warmup_steps={WARMUP_STEPS}",
        f"trainer.max_steps={a.warmup + a.steps + 1}",
        f"trainer.accumulate_grad_batches={a.accum}",
        f"trainer.accelerator={a.device}",
        "trainer.devices=1",
        "trainer.limit_val_batches=0",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.progress_bar=null",
        f"seed={SEED}",
        "export_hf=false",  # checkpoints are not written here (below), so there is nothing to export
    ]
    if best:  # the preset's precision is auto; the benchmark's precision overrides it below
        overrides.insert(0, f"trainer={a.device}")
    if a.malloc != "preset":  # "preset": as the config says (speed.tune_malloc: true in conf/train.yaml)
        overrides.append(f"speed.tune_malloc={str(a.malloc == 'tuned').lower()}")
    if a.data:
        overrides.append(f"data.path={a.data}")
    if a.compile is not None:
        overrides.append(f"speed.compile={str(a.compile).lower()}")
    overrides += a.set or []
    overrides.append(f"trainer.precision={a.precision}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with tempfile.TemporaryDirectory() as out, open_dict(cfg):
        cfg.paths.output_dir = out
        cfg.callbacks.bench_timer = {"_target_": f"{__name__}.StepTimer"}
        globals()["StepTimer"] = StepTimer
        L.Trainer.save_checkpoint = lambda *args, **kwargs: None  # after the timed steps; 1.5 GB of disk for nothing
        train(cfg)
    return summarize(starts, ends, losses, a, kernel, passes)


def run_hf_trainer(a: argparse.Namespace) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from lyric_lm.data.packing import collate_blocks

    starts, ends, kernel, passes, clock = [], [], [], [], []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            clock.append(ModelClock(model))

        def on_step_begin(self, args, state, control, **kwargs):
            starts.append(time.perf_counter())
            kernel.append(kernel_work())
            passes.append(clock[0].mark())

        def on_step_end(self, args, state, control, **kwargs):
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=a.batch,
            gradient_accumulation_steps=a.accum,
            learning_rate=LR,
            weight_decay=WEIGHT_DECAY,
            warmup_steps=WARMUP_STEPS,
            lr_scheduler_type="linear",
            max_steps=a.warmup + a.steps + 1,
            max_grad_norm=1.0,
            bf16=a.precision == "bf16-mixed",
            use_cpu=True,
            save_strategy="no",
            report_to=[],
            logging_steps=10,
            disable_tqdm=True,
            seed=SEED,
        )
        trainer = Trainer(
            model=random_model(a.model),
            args=args,
            train_dataset=packed_blocks(a.block),
            data_collator=collate_blocks,
            callbacks=[StepTimer()],
        )
        trainer.train()
    return summarize(starts, ends, [], a, kernel, passes)


def worker(a: argparse.Namespace) -> None:
    if a.malloc == "shipped":  # a worker run by hand (bench/gpu_check.sh): the contender's own allocator
        a.malloc = SHIPPED_MALLOC[a.worker]
    if a.worker in ("plain_loop", "hf_trainer"):
        tune_malloc_if(a.malloc)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    run = {
        "plain_loop": run_plain_loop,
        "lyric_lm": lambda a: run_lyric_lm(a, best=False),
        "lyric_lm_best": lambda a: run_lyric_lm(a, best=True),
        "hf_trainer": run_hf_trainer,
    }[a.worker]
    result = run(a)
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result))


# ---------------------------------------------------------------- the driver: peaks, rounds, report


def matmul_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """Dense matmul GFLOP/s on this machine now, fp32 and bf16 (median of `repeats`)."""
    import torch

    out = {}
    for name, dtype in (("32-true", torch.float32), ("bf16-mixed", torch.bfloat16)):
        x, y = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        x @ y
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            x @ y
            times.append(time.perf_counter() - t)
        out[name] = 2 * n**3 / statistics.median(times) / 1e9
    return out


def flops_per_token(shape: str, block: int) -> float:
    """6 x parameters (without position embeddings; the tied token embedding counts once, as the output
    layer's matmul) + the attention scores and mixing, 12 x layers x width x block (nanoGPT's estimate)."""
    n_layer, d, _, n_pos = SHAPES[shape]
    vocab = 50257
    params = vocab * d + n_layer * (12 * d * d + 13 * d) + 2 * d  # wte + blocks (weights, biases, 2 LayerNorms) + ln_f
    return 6 * params + 12 * n_layer * d * block


def worker_args(impl: str, malloc: str) -> list[str]:
    """The worker, allocator and overrides of a contender or control; `malloc` tuned/default forces one on all."""
    worker, shipped, sets = CONTROLS.get(impl) or (impl, SHIPPED_MALLOC[impl], [])
    args = ["--worker", worker, "--malloc", shipped if malloc == "shipped" else malloc]
    for s in sets:
        args += ["--set", s]
    return args


def malloc_of(impl: str, malloc: str) -> str:
    """The allocator a contender ran with, as the report names it: `default` (glibc as it comes) or `tuned`."""
    setting = malloc if malloc != "shipped" else (CONTROLS[impl][1] if impl in CONTROLS else SHIPPED_MALLOC[impl])
    return "tuned" if setting == "preset" else setting  # conf/train.yaml: speed.tune_malloc: true


def run_worker(impl: str, model: str, precision: str, a: argparse.Namespace, steps: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *worker_args(impl, a.malloc), "--model", model]
    cmd += ["--precision", precision, "--batch", str(a.batch), "--block", str(a.block), "--accum", str(a.accum)]
    cmd += ["--warmup", str(a.warmup), "--steps", str(steps)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"error: {impl} ({model}, {precision}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def auto_precision() -> str:
    sys.path.insert(0, str(ROOT))
    from lyric_lm.speed.precision import auto_precision

    return auto_precision("cpu")


def machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    sys.path.insert(0, str(ROOT))
    from lyric_lm.speed.precision import cpu_supports_bf16

    bf16 = "AVX512-BF16/AMX" if cpu_supports_bf16() else "no native bf16"
    return (
        f"{cpu}, {os.cpu_count()} cores ({bf16}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}"
    )


def round_order(names: list[str], r: int) -> list[str]:
    """Round r's order: rotated by r, and reversed in every other round, so each contender runs before and after
    each other one about equally often (a plain rotation ran plain_loop right before lyric_lm in 7 of 8 rounds)."""
    k = (r // 2) % len(names)
    order = names[k:] + names[:k]
    return order if r % 2 == 0 else order[::-1]


def bench(a: argparse.Namespace) -> list[dict]:
    models = a.model or ["tiny", "gpt2"]
    preset_precision = auto_precision()  # trainer=cpu's on this CPU
    precisions = [preset_precision if p == "auto" else p for p in a.precision or ["32-true", "bf16-mixed"]]

    def contenders(precision: str) -> list[str]:
        if a.impl:
            return list(a.impl)
        if not a.controls:
            return list(CONTENDERS)
        controls = [c for c in CONTROLS if c in EVERY_SETTING or precision == preset_precision]
        return list(CONTENDERS) + controls

    load_before = os.getloadavg()[0]
    samples: dict[tuple, list[dict]] = {}
    peaks: list[dict] = []
    rounds = {m: a.rounds or ROUNDS[m] for m in models}
    steps = {m: a.steps or STEPS[m] for m in models}
    for r in range(max(rounds.values())):
        peaks.append(matmul_peaks())
        for model in (m for m in models if r < rounds[m]):
            for precision in precisions:
                names = contenders(precision)
                for impl in round_order(names, r):
                    res = run_worker(impl, model, precision, a, steps[model])
                    samples.setdefault((model, precision, impl), []).append(res)
                    print(
                        f"# round {r + 1}/{rounds[model]} {model} {precision} {impl}: {res['step_s']:.3f} s/step"
                        f" ({res['page_faults_per_step']:.0f} page faults, {res['kernel_s_per_step']:.3f} s kernel"
                        + (
                            f", {res['outside_passes_s_per_step'] * 1000:.1f} ms outside the passes)"
                            if "outside_passes_s_per_step" in res
                            else ")"
                        ),
                        file=sys.stderr,
                        flush=True,
                    )
    peak = {p: statistics.median(x[p] for x in peaks) for p in ("32-true", "bf16-mixed")}
    rows = []
    for (model, precision, impl), runs in samples.items():
        tokens = a.batch * a.block * a.accum
        tps = [tokens / r["step_s"] for r in runs]
        base = samples.get((model, precision, "plain_loop"))
        ratios = [t / (tokens / b["step_s"]) for t, b in zip(tps, base, strict=False)] if base else []
        fpt = flops_per_token(model, a.block)
        tok_s = statistics.median(tps)
        rows.append(
            {
                "impl": impl,
                "model": model,
                "precision": precision,
                "tokens_per_s": round(tok_s, 1),
                "optimizer_steps_per_s": round(tok_s / tokens, 3),
                "ratio_to_plain_loop": round(statistics.median(ratios), 3) if ratios else None,
                "mfu": round(tok_s * fpt / (peak[precision] * 1e9), 3),
                "mfu_vs_fp32_peak": round(tok_s * fpt / (peak["32-true"] * 1e9), 3),
                "mfu_vs_bf16_peak": round(tok_s * fpt / (peak["bf16-mixed"] * 1e9), 3),
                "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
                "data_wait_share": round(statistics.median(r["data_wait_share"] for r in runs), 4),
                "page_faults_per_step": round(statistics.median(r["page_faults_per_step"] for r in runs)),
                "kernel_s_per_step": round(statistics.median(r["kernel_s_per_step"] for r in runs), 3),
                **{  # ModelClock's split, where the worker is instrumented
                    k: round(statistics.median(r[k] for r in runs), 4)
                    for k in ("passes_s_per_step", "outside_passes_s_per_step")
                    if all(k in r for r in runs)
                },
                "batch": a.batch,
                "block": a.block,
                "accum": a.accum,
                "rounds": len(runs),
                "malloc": malloc_of(impl, a.malloc),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    meta = {"peaks_gflops": peak, "rounds": rounds, "steps": steps, "load_before": load_before}
    meta["load_after"] = os.getloadavg()[0]
    if a.loss_check:
        meta["loss_check"] = loss_check(a)
    print(json.dumps({"meta": meta}), flush=True)
    return rows, meta


def loss_check(a: argparse.Namespace, steps: int = 50) -> dict:
    """lyric_lm_best for `steps` optimizer steps at 32-true and at bf16-mixed, same seed and batches: loss curves."""
    measured = steps - a.warmup - 1  # the worker runs warmup + measured + 1 steps
    curves = {p: run_worker("lyric_lm_best", a.loss_model, p, a, measured)["losses"] for p in ("32-true", "bf16-mixed")}
    return compare_curves(curves["32-true"], curves["bf16-mixed"]) | {"model": a.loss_model, "curves": curves}


def moving_mean(xs: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each step (fewer at the start)."""
    return [statistics.mean(xs[max(0, i + 1 - window) : i + 1]) for i in range(len(xs))]


def compare_curves(fp32: list[float], bf16: list[float]) -> dict:
    """bf16 against fp32, same seed and batches. The tolerance is on LOSS_WINDOW-step moving means: one step's
    loss swings with its batch, and a curve that trails by a step shows a large single-step gap on the steep
    first steps; the per-step figures are reported beside it."""
    diffs = [abs(x - y) for x, y in zip(fp32, bf16, strict=True)]
    smooth = [
        abs(x - y) / x for x, y in zip(moving_mean(fp32, LOSS_WINDOW), moving_mean(bf16, LOSS_WINDOW), strict=True)
    ]
    return {
        "steps": len(diffs),
        "max_abs_diff": round(max(diffs), 4),
        "mean_abs_diff": round(statistics.mean(diffs), 4),
        "max_rel_diff": round(max(d / x for d, x in zip(diffs, fp32, strict=True)), 4),
        "max_rel_diff_smoothed": round(max(smooth), 4),
        "within_tolerance": max(smooth) <= LOSS_TOLERANCE,
        "fp32_first_last": [round(fp32[0], 3), round(fp32[-1], 3)],
        "bf16_first_last": [round(bf16[0], 3), round(bf16[-1], 3)],
    }


def target_lines(rows: list[dict], meta: dict) -> list[str]:
    """The speed targets, checked against this run's medians: one markdown bullet each."""
    by = {(r["model"], r["precision"], r["impl"]): r for r in rows}
    out = []

    def check(ok: bool) -> str:
        return "met" if ok else "**not met**"

    for model in ("gpt2", "tiny"):
        for precision in ("32-true", "bf16-mixed"):
            best, off = by.get((model, precision, "lyric_lm_best")), by.get((model, precision, "lyric_lm"))
            plain = by.get((model, precision, "plain_loop"))
            if not plain:
                continue
            if best and model == "gpt2":
                out.append(
                    f"- {model} {precision}: lyric_lm_best {best['ratio_to_plain_loop']:.2f}x plain_loop "
                    f"(target >= 1.15x: {check(best['ratio_to_plain_loop'] >= 1.15)}); peak RSS "
                    f"{best['peak_rss_mb'] / plain['peak_rss_mb'] - 1:+.1%} (target <= +10%: "
                    f"{check(best['peak_rss_mb'] <= 1.10 * plain['peak_rss_mb'])})"
                )
            if off:
                out.append(
                    f"- {model} {precision}: lyric_lm, every speed option off, {off['ratio_to_plain_loop']:.2f}x "
                    f"plain_loop (target >= 0.97x: {check(off['ratio_to_plain_loop'] >= 0.97)})"
                )
            # The same pair with glibc tuned on both sides: page faults no longer set half the step's time (and
            # its variance between processes), so only the frameworks differ.
            off_tuned = by.get((model, precision, "lyric_lm+malloc"))
            plain_tuned = by.get((model, precision, "plain_loop+malloc"))
            if off_tuned and plain_tuned:
                ratio = off_tuned["tokens_per_s"] / plain_tuned["tokens_per_s"]
                out.append(
                    f"- {model} {precision}: the same with the allocator tuned on both sides, {ratio:.2f}x "
                    f"(target >= 0.97x: {check(ratio >= 0.97)})"
                )
            # Lightning's own work per step, apart from the passes (ModelClock): the target's "overhead <= 3%".
            for ours, theirs in ((off, plain), (off_tuned, plain_tuned)):
                key = "outside_passes_s_per_step"
                if ours and theirs and key in ours and key in theirs:
                    extra = ours[key] - theirs[key]
                    step = theirs["batch"] * theirs["block"] * theirs["accum"] / theirs["tokens_per_s"]
                    share = extra / step
                    out.append(
                        f"- {model} {precision}, {ours['malloc']} allocator, outside the passes: {ours['impl']} "
                        f"{ours[key] * 1000:.1f} ms against {theirs['impl']} {theirs[key] * 1000:.1f} ms: Lightning "
                        f"adds {extra * 1000:+.1f} ms, {share:+.1%} of the plain loop's {step * 1000:.0f} ms step "
                        f"(target <= 3%: {check(share <= 0.03)})"
                    )
    fp32, bf16 = by.get(("gpt2", "32-true", "lyric_lm_best")), by.get(("gpt2", "bf16-mixed", "lyric_lm_best"))
    if fp32 and bf16:
        ratio = bf16["tokens_per_s"] / fp32["tokens_per_s"]
        ceiling = meta["peaks_gflops"]["bf16-mixed"] / meta["peaks_gflops"]["32-true"]
        out.append(
            f"- gpt2 lyric_lm_best bf16-mixed / 32-true tokens/s: {ratio:.2f}x (target >= 2x: {check(ratio >= 2)}; "
            f"matmul peaks {ceiling:.2f}x)"
        )
    waits = [r["data_wait_share"] for r in rows if r["impl"].startswith("lyric_lm")]
    if waits:
        wait = max(waits)
        out.append(f"- data wait, largest lyric_lm row: {wait:.2%} of step time (target < 2%: {check(wait < 0.02)})")
    return out


def write_markdown(rows: list[dict], meta: dict, a: argparse.Namespace, command: str, path: Path | None = None) -> None:
    """Replace the section between BEGIN and END in BENCHMARKS.md (other sections stay), or append it: the table,
    the loss check and the targets. Every figure is also in the JSON lines the run prints."""
    path = path or ROOT / "BENCHMARKS.md"
    rounds_text = ", ".join(f"{n} rounds ({model})" for model, n in meta["rounds"].items())
    steps_text = ", ".join(f"{n} steps ({model})" for model, n in meta["steps"].items())
    loaded = max(meta["load_before"], meta["load_after"]) > 2.5  # the benchmark's own 2 threads count ~2
    lines = [
        BEGIN,
        "## Training throughput: lyric_lm vs a plain PyTorch loop and Hugging Face Trainer",
        "",
        f"`{command}` wrote this section. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{machine()}; load average {meta['load_before']:.1f} before, {meta['load_after']:.1f} after"
        + (" (a shared, loaded machine: even the ratios are noisy)." if loaded else " (no other work ran).")
        + f" Matmul peaks in the same run: fp32 {meta['peaks_gflops']['32-true']:.0f} GFLOP/s, "
        f"bf16 {meta['peaks_gflops']['bf16-mixed']:.0f} GFLOP/s. Batch {a.batch} x {a.block} tokens, accumulation "
        f"{a.accum}; medians of {rounds_text} x {steps_text} after {a.warmup} warm-up steps.",
        "",
        "Each contender trains the same tokens, model shape (random init), batch, precision and schedule in a fresh "
        "process: `plain_loop` (a tutorial PyTorch loop), `hf_trainer` (transformers `Trainer`, its defaults), "
        "`lyric_lm` (`train.py`, every speed option off, glibc's allocator as it comes) and `lyric_lm_best` "
        "(`train.py trainer=cpu`). Controls: `+malloc` adds the allocator tuning (`speed.tune_malloc`), `-fast_ops` "
        "drops the three CPU model options, `+chunk` adds `model.loss_chunk=128`, `+compile` torch.compile. "
        "Data wait: the share of a step outside the training step (fetching the batch, the loop's own work). "
        "Outside passes: the time per step outside the model's forward and backward passes (same hooks in each "
        "loop); `lyric_lm`'s minus `plain_loop`'s is what Lightning adds.",
        "",
        "| model | precision | impl | malloc | tokens/s | opt steps/s | vs plain_loop | MFU (own peak) "
        "| MFU vs bf16 peak | peak RSS MB | data wait | outside passes ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["model"], r["precision"], ALL_IMPLS.index(r["impl"]))):
        ratio = f"{r['ratio_to_plain_loop']:.2f}x" if r["ratio_to_plain_loop"] is not None else "-"
        outside = f"{r['outside_passes_s_per_step'] * 1000:.1f}" if "outside_passes_s_per_step" in r else "-"
        lines.append(
            f"| {r['model']} | {r['precision']} | {r['impl']} | {r['malloc']} | "
            f"{r['tokens_per_s']:.0f} | {r['optimizer_steps_per_s']:.2f} | {ratio} | {r['mfu']:.0%} | "
            f"{r['mfu_vs_bf16_peak']:.0%} | {r['peak_rss_mb']} | {r['data_wait_share']:.1%} | {outside} |"
        )
    if "loss_check" in meta:
        lc = meta["loss_check"]
        lines += [
            "",
            f"bf16-mixed vs 32-true loss curves (lyric_lm_best, {lc['model']} shape, same seed and batches, "
            f"{lc['steps']} optimizer steps): {LOSS_WINDOW}-step moving means differ by at most "
            f"{lc['max_rel_diff_smoothed']:.2%} (tolerance {LOSS_TOLERANCE:.0%}: "
            f"{'met' if lc['within_tolerance'] else 'NOT met'}); single steps by at most {lc['max_rel_diff']:.2%}.",
        ]
    targets = target_lines(rows, meta)
    if targets:
        lines += ["", "Targets, from the rows above:", "", *targets]
    lines.append(END)
    sys.path.insert(0, str(ROOT))
    from lyric_lm.markdown import replace_section

    replace_section(path, BEGIN, END, "\n".join(lines))
    print(f"# wrote {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", nargs="+", choices=sorted(SHAPES), help="default: tiny gpt2")
    p.add_argument(
        "--precision",
        nargs="+",
        choices=["32-true", "bf16-mixed", "auto"],
        help="default: 32-true bf16-mixed (quick: auto)",
    )
    p.add_argument("--quick", action="store_true", help="2 rounds, 2 + 3 steps, no controls; prints only (< 3 min)")
    p.add_argument("--impl", nargs="+", choices=ALL_IMPLS, help="default: the four contenders (+ controls)")
    p.add_argument("--controls", action=argparse.BooleanOptionalAction, help="the control runs (default: not quick)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--accum", type=int, default=1)
    p.add_argument("--rounds", type=int, help="rounds for every shape (default: tiny 8, gpt2 3; quick: 2)")
    p.add_argument("--warmup", type=int, help="optimizer steps left out of the figures (default: 2)")
    p.add_argument("--steps", type=int, help="measured optimizer steps per run (default: tiny 16, gpt2 6; quick: 3)")
    p.add_argument(
        "--malloc",
        choices=["shipped", "tuned", "default", "preset"],  # preset: workers only
        default="shipped",
        help="glibc allocator: shipped = each contender's own (default), or tuned/default for all",
    )
    p.add_argument("--loss-check", action=argparse.BooleanOptionalAction, help="50-step bf16 vs fp32 curves")
    p.add_argument("--loss-model", choices=sorted(SHAPES), default="gpt2", help="shape of the loss check")
    p.add_argument("--write", action=argparse.BooleanOptionalAction, help="write BENCHMARKS.md (default: not quick)")
    p.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)  # one run, in this process
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help=argparse.SUPPRESS)  # lyric_lm only
    p.add_argument("--data", help=argparse.SUPPRESS)  # a lyrics file for lyric_lm workers (gpu_check.sh)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, help=argparse.SUPPRESS)
    p.add_argument("--set", action="append", help=argparse.SUPPRESS)  # extra Hydra overrides for lyric_lm workers
    a = p.parse_args(argv)
    if a.worker:
        a.model, a.precision = (a.model or ["tiny"])[0], (a.precision or ["32-true"])[0]
        a.warmup = 2 if a.warmup is None else a.warmup
        return worker(a)
    if a.quick:
        a.precision = a.precision or ["auto"]
    a.rounds = a.rounds or (2 if a.quick else None)  # None: ROUNDS per shape
    # 2 in quick runs too: with glibc's defaults the second step still page-faults more (up to +0.3 s of kernel time
    # at 124M, and ~10k faults for the tuned preset), and the quick figures are read against the full run's
    a.warmup = a.warmup if a.warmup is not None else 2
    a.steps = a.steps or (3 if a.quick else None)  # None: STEPS per shape
    a.loss_check = a.loss_check if a.loss_check is not None else not a.quick
    a.controls = a.controls if a.controls is not None else not a.quick
    a.write = a.write if a.write is not None else not a.quick
    rows, meta = bench(a)
    if a.write:
        args = argv if argv is not None else sys.argv[1:]
        write_markdown(rows, meta, a, " ".join(["python bench/throughput.py", *args]))


if __name__ == "__main__":
    main()
