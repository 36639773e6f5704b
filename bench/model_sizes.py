"""Parameters, trainable parameters and peak training memory per GPT-2 size: full fine-tuning, LoRA, checkpointing.

    python bench/model_sizes.py                       # measure gpt2 on CPU, compute the rest (~3-6 minutes)
    python bench/model_sizes.py --measure gpt2 gpt2-medium

Parameter counts are exact for every size (the models are built on PyTorch's meta device: shapes, no memory).
Peak memory is measured, where asked, as the growth of the peak resident memory (ru_maxrss) of a fresh process
that builds the model with random weights and runs two AdamW training steps in fp32 on one batch; elsewhere it
is computed (estimate() below). The table goes into BENCHMARKS.md between its model_sizes markers.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = ["gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"]
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["c_attn", "c_proj", "c_fc"]}  # conf/model defaults
MODES = {  # name -> overrides of the model config group
    "full fine-tuning": {},
    "LoRA r=8": {"lora": LORA},
    "full + gradient checkpointing": {"gradient_checkpointing": True},
    "LoRA r=8 + gradient checkpointing": {"lora": LORA, "gradient_checkpointing": True},
}
VOCAB = 50257
# transformers' eager fp32 GPT-2 keeps ~3.3x the activations of the paper's 16-bit count (more intermediates, 4-byte
# masks and scores): calibrated on gpt2's measured LoRA run, where activations are nearly all of the memory.
ACTIVATION_FACTOR = 3.3


def model_cfg(size: str, mode: str) -> dict:
    return {"name_or_path": size, "from_scratch": True, **MODES[mode]}


def count(size: str, mode: str) -> tuple[int, int]:
    """(total, trainable) parameters, built on the meta device: exact, instant, no memory."""
    import torch

    from lyric_lm.model import build_causal_lm, count_parameters

    with torch.device("meta"):
        model = build_causal_lm(model_cfg(size, mode))
    trainable, total = count_parameters(model)
    return total, trainable


def estimate(size: str, mode: str, total: int, trainable: int, batch: int, seq: int) -> float:
    """Peak fp32 training memory in bytes: weights + gradients + AdamW's two moments + activations.

    Activations follow Korthikanti et al. 2022 (arXiv:2205.05198), s*b*h*(34 + 5*a*s/h) bytes per layer in 16-bit,
    doubled for fp32 and multiplied by ACTIVATION_FACTOR; checkpointing keeps each block's input (s*b*h*4 bytes)
    and one block's activations.
    The logits and their gradient add 3 x b*s*vocab*4 bytes. LoRA keeps the activations (inputs' gradients still
    flow through every layer) but needs gradients and AdamW state only for the adapters.
    """
    from lyric_lm.hub import GPT2_SHAPES

    n_layer, h, a = GPT2_SHAPES[size]
    per_layer = seq * batch * h * (34 + 5 * a * seq / h) * 2 * ACTIVATION_FACTOR
    if MODES[mode].get("gradient_checkpointing"):
        activations = n_layer * seq * batch * h * 4 + per_layer
    else:
        activations = n_layer * per_layer
    logits = 3 * batch * seq * VOCAB * 4
    return 4 * total + (4 + 8) * trainable + activations + logits


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read())[1]) * 1024


def measure_here(size: str, mode: str, batch: int, seq: int) -> None:
    """In a fresh process: peak resident memory growth over two training steps. Prints a JSON line."""
    import torch

    from lyric_lm.model import build_causal_lm
    from lyric_lm.optim import build_adamw

    torch.manual_seed(0)
    base = rss_bytes()  # torch and transformers imported, nothing built
    model = build_causal_lm(model_cfg(size, mode))
    model.train()
    optimizer = build_adamw(model, 1e-4, 0.01, (0.9, 0.999))
    ids = torch.randint(0, VOCAB, (batch, seq))
    for _ in range(2):  # AdamW allocates its moments at the first step; the second is the steady state
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
    print(json.dumps({"peak_bytes": peak - base}))


def measure(size: str, mode: str, batch: int, seq: int) -> float:
    cmd = [sys.executable, __file__, "--child", size, mode, str(batch), str(seq)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def table(measured: set[str], batch: int, seq: int) -> str:
    lines = [
        f"Training in fp32 with AdamW, one batch of {batch} x {seq} tokens; LoRA r=8 on c_attn, c_proj, c_fc.",
        "",
        "| model | mode | parameters | trainable | trainable share | peak memory (GiB) | how |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        for mode in MODES:
            total, trainable = count(size, mode)
            computed = estimate(size, mode, total, trainable, batch, seq) / 2**30
            if size in measured:
                peak = measure(size, mode, batch, seq) / 2**30
                how = f"measured on CPU (computed: {computed:.1f})"
            else:
                peak, how = computed, "computed"
            lines.append(
                f"| {size} | {mode} | {total / 1e6:,.0f}M | {trainable / 1e6:,.1f}M | {100 * trainable / total:.2f}% "
                f"| {peak:.1f} | {how} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def write_benchmarks(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    start, end = "<!-- model_sizes:start -->", "<!-- model_sizes:end -->"
    block = f"{start}\n## Model sizes (bench/model_sizes.py)\n\n{text}{end}"
    from lyric_lm.markdown import replace_section

    replace_section(path, start, end, block)


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        size, mode, batch, seq = sys.argv[2:6]
        measure_here(size, mode, int(batch), int(seq))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", nargs="*", default=["gpt2"], choices=SIZES, help="sizes to measure on CPU")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    args = parser.parse_args()
    text = table(set(args.measure), args.batch, args.seq)
    write_benchmarks(text)
    print(text)


if __name__ == "__main__":
    main()
