"""Every private name lyric_lm touches (lyric_lm/compat.py) still exists as used; a failure names the internal.

These run at the floors and at the newest versions CI installs: an upgrade that renames or reshapes one of them fails
here by name, before it silently breaks exact resume, the step-interval checkpoints, fused clipping or the CPU ops.
"""

import ast
import re
import tokenize
from importlib import metadata
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.optimizer import LightningOptimizer
from packaging.requirements import Requirement
from packaging.version import Version

from lyric_lm import compat
from tests.conftest import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None


def fail(internal: str, library: str, what: str) -> None:
    pytest.fail(f"{library} {metadata.version(library)}: {internal} {what}; update lyric_lm/compat.py", pytrace=False)


class Probe(L.LightningModule):
    """A one-weight model whose fit lets a callback look at the Trainer's internals mid-run."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class LookInside(L.Callback):
    def __init__(self):
        self.seen: dict[str, bool] = {}

    def on_train_start(self, trainer, pl_module):
        loop = trainer.fit_loop
        self.seen["FitLoop._combined_loader"] = getattr(loop, "_combined_loader", None) is not None
        self.seen["FitLoop._data_fetcher"] = getattr(loop, "_data_fetcher", None) is not None
        self.seen["FitLoop._combined_loader_states_to_load"] = hasattr(loop, "_combined_loader_states_to_load")
        self.seen["CombinedLoader._load_state_dicts"] = hasattr(loop._combined_loader, "_load_state_dicts")
        self.seen["CombinedLoader.flattened"] = hasattr(loop._combined_loader, "flattened")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        connector = getattr(trainer, "_logger_connector", None)
        self.seen["Trainer._logger_connector.update_train_step_metrics"] = callable(
            getattr(connector, "update_train_step_metrics", None)
        )
        compat.log_step_metrics_now(trainer)  # callable mid-step without error


def test_lightning_fit_loop_and_logger_internals():
    probe = LookInside()
    off = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "enable_model_summary": False}
    trainer = L.Trainer(max_steps=2, callbacks=[probe], **off)
    trainer.fit(Probe(), train_dataloaders=torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2))
    for internal, present in probe.seen.items():
        if not present:
            fail(internal, "lightning", "is gone")
    assert len(probe.seen) == 6


def test_lightning_checkpoint_rng_optimizer_and_precision_internals():
    callback = ModelCheckpoint()
    if not isinstance(getattr(callback, "_last_global_step_saved", None), int):
        fail("ModelCheckpoint._last_global_step_saved", "lightning", "is gone")
    compat.set_last_saved_step(callback, 7)
    assert compat.last_saved_step(callback) == 7
    sgd = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1)
    if compat.unwrap_optimizer(LightningOptimizer(sgd)) is not sgd:
        fail("LightningOptimizer._optimizer", "lightning", "no longer holds the torch optimizer")
    states = compat.collect_rng_states()
    if not {"torch", "numpy", "python"} <= states.keys():
        fail("lightning.fabric.utilities.seed._collect_rng_states", "lightning", f"returns {sorted(states)}")
    first = torch.rand(3)
    compat.set_rng_states(states)
    if not torch.equal(torch.rand(3), first):
        fail("lightning.fabric.utilities.seed._set_rng_states", "lightning", "no longer restores the states")
    if not {"32-true", "bf16-mixed", "16-mixed"} <= compat.PRECISIONS:
        fail("lightning.fabric.plugins.precision.precision._PRECISION_INPUT", "lightning", "changed")


def test_torchdata_loader_state_counts_batches_yielded():
    from torchdata.stateful_dataloader import StatefulDataLoader

    loader = StatefulDataLoader(list(range(6)), batch_size=2)
    it = iter(loader)
    next(it)
    if loader.state_dict().get("_num_yielded") != 1:
        fail("StatefulDataLoader.state_dict()['_num_yielded']", "torchdata", "is gone")


def test_fused_adamw_divides_gradients_by_grad_scale():
    torch.manual_seed(0)
    a, b = (torch.nn.Parameter(torch.randn(8)) for _ in range(2))
    b.data.copy_(a.data)
    grad = torch.randn(8)
    a.grad, b.grad = grad.clone() * 4, grad.clone()
    fused = torch.optim.AdamW([a], lr=0.1, fused=True)
    compat.divide_grads_in_fused_step(fused, torch.tensor(4.0))
    fused.step()
    torch.optim.AdamW([b], lr=0.1).step()
    if not torch.allclose(a, b, atol=1e-6):
        fail("torch.optim.AdamW(fused=True).grad_scale", "torch", "no longer divides the gradients in the kernel")
    assert torch.allclose(a.grad, grad)  # and the divided gradient is stored, as clip_grad_norm_ would leave it


def test_transformers_attention_registry_and_gelu_class():
    from transformers import AutoModelForCausalLM, GPT2Config

    model = AutoModelForCausalLM.from_config(GPT2Config(n_layer=1, n_embd=32, n_head=2, attn_implementation="sdpa"))
    if not compat.runs_sdpa(model):
        fail("config._attn_implementation / PreTrainedModel._can_set_attn_implementation", "transformers", "changed")
    if not any(type(m) is compat.GELU_NEW for m in model.modules()):
        fail("transformers.activations.NewGELUActivation", "transformers", "is no longer GPT-2's activation")
    compat.register_attention("lyric_compat_probe", compat.sdpa_attention)
    model.set_attn_implementation("lyric_compat_probe")
    ids = torch.randint(0, 100, (1, 8))
    assert model(input_ids=ids).logits.shape == (1, 8, model.config.vocab_size)


def test_verified_ranges_are_the_bounds_in_pyproject_and_hold_here():
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    specs = {}
    for dep in deps:
        req = Requirement(dep)
        specs[req.name] = req.specifier
    for library, (floor, newest) in compat.VERIFIED.items():
        spec = specs[library]
        assert Version(floor) in spec, f"{library}: the verified floor {floor} is outside pyproject's {spec}"
        upper = [s for s in spec if s.operator == "<"]
        assert upper, f"{library}: pyproject.toml has no upper bound, but lyric_lm/compat.py touches its internals"
        assert Version(newest.replace("*", "999")) in spec, f"{library}: {newest} verified but {spec} excludes it"
        installed = Version(metadata.version(library))
        assert installed in spec, f"{library} {installed} is outside the verified {spec}"


PRIVATE_NAMES = re.compile(
    r"(?<!\w)(?:_collect_rng_states|_set_rng_states|_combined_loader|_data_fetcher|_logger_connector|_last_global_step_saved"
    r"|\b_optimizer\b|grad_scale|_PRECISION_INPUT|_attn_implementation|_can_set_attn_implementation|_num_yielded"
    r"|AttentionInterface|AttentionMaskInterface|sdpa_attention_forward|NewGELUActivation|__exit__ =)"
)


def code_lines(path: Path) -> dict[int, str]:
    """The code of a Python file by line number, without comments and strings (docstrings may name internals)."""
    lines: dict[int, str] = {}
    with path.open("rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.ENCODING):
                lines[tok.start[0]] = lines.get(tok.start[0], "") + " " + tok.string
    return lines


def test_no_module_but_compat_touches_a_private_name():
    offenders = []
    for path in sorted((ROOT / "lyric_lm").rglob("*.py")):
        if path.name != "compat.py":
            hits = [f"{n}: {code}" for n, code in code_lines(path).items() if PRIVATE_NAMES.search(code)]
            offenders += [f"{path.relative_to(ROOT)}:{hit}" for hit in hits]
    assert offenders == []


def test_no_import_cycles_no_hidden_imports_and_layers_depend_downward():
    """The import graph of lyric_lm: acyclic; lyric_lm imported at the top of modules only; the core
    (module, model, optim, loss, tokenizer, data) imports no layer; speed imports neither run nor songs."""
    graph: dict[str, set[str]] = {}
    hidden = []
    for path in sorted((ROOT / "lyric_lm").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        graph[name] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lyric_lm"):
                graph[name] |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name.startswith("lyric_lm")}
        for func in ast.walk(tree):
            if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(func):
                    names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
                    if any(n.startswith("lyric_lm") for n in names):
                        hidden.append(f"{name}.{func.name}: {ast.unparse(node)}")
    graph = {m: {t for t in deps if t in graph and t != m} for m, deps in graph.items()}
    assert hidden == []  # imports of lyric_lm inside functions (to dodge a cycle)

    def visit(m: str, path: list[str]) -> None:
        assert m not in path, f"import cycle: {' -> '.join([*path[path.index(m) :], m])}"
        for dep in graph[m]:
            visit(dep, [*path, m])

    for module in graph:
        visit(module, [])
    core = ("lyric_lm.module", "lyric_lm.model", "lyric_lm.optim", "lyric_lm.loss", "lyric_lm.tokenizer")
    for module, deps in graph.items():
        layers = {d.split(".")[1] for d in deps if d.count(".") >= 2}
        if module in core or module.startswith("lyric_lm.data"):
            assert not layers & {"run", "speed", "songs"}, f"{module} (core) imports a layer: {deps}"
        if module.startswith("lyric_lm.speed"):
            assert not layers & {"run", "songs"}, f"{module} imports {deps}"


def test_no_library_module_reads_the_repositorys_conf():
    for path in sorted((ROOT / "lyric_lm").rglob("*.py")):
        text = path.read_text()
        assert not re.search(r"""["']conf["/]""", text), f"{path.relative_to(ROOT)} reads conf/"
