"""The README is executable: its shell commands run, in order, as a new user runs them, on the tiny model.

Which commands. Every line of README.md's ```bash blocks (lines ending in `\\` joined, `# comments` dropped, a `&&`
chain split into its commands) and every inline `python ...`, `bash ...` or `tensorboard ...` span of its prose (such
as `python train.py experiment=quickstart --cfg job`). Each one is either run (the rules below) or listed in NOT_RUN
with the reason; test_every_readme_command_is_run_or_listed (fast) fails on a command that is neither, and on a listed
command the README no longer has, so the README cannot drift away from this test.

How a command runs (test_readme_command, slow: one process per README command, in README order):
1. Where: in a copy of the project's files (`git ls-files`, tracked and not ignored) in a temporary folder, as in a
   fresh clone, with `shlex.split` and no shell. The README's first block (venv, `pip install -e .`) is the environment
   the tests already run in. Offline: HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE/HF_DATASETS_OFFLINE=1, the hub endpoint a
   closed local port and an empty HF cache (conftest's `_offline`); the tokenized-data cache is the test session's.
   One torch thread per process (OMP_NUM_THREADS=1): the toy models gain nothing from a second one, and on a busy
   2-core machine two spinning OpenMP threads made a 200-token generate.py 3x slower (27 s instead of 8 s).
2. The user's files the README names (`my_lyrics.txt`, `my_lyrics/`, `song_lyrics.csv`, `songs.jsonl`,
   `old_export.csv` in latin-1, `prompts.txt`) are written into the copy under those names: those commands run as
   written.
3. Placeholders: `<run>` and `outputs/2026-01-01/10-00-00` are the quickstart's run dir, except in a train.py command
   without `experiment=quickstart`, where they are the run of plain `python train.py` (a resume takes the run's own
   config, README "Outputs"); `step000120-val_loss3.210.ckpt` is that run's best checkpoint at that moment;
   `/path/to/a/save_pretrained/dir` and `model_dir=gpt2` (a hub id) are the quickstart's `hf_model/`.
4. Tiny model: a train.py command whose model would come from the hub (the default `model=gpt2`, `model=gpt2_medium`,
   `gpt2_large`, `gpt2_xl`, `model.name_or_path=gpt2-medium`) gets TINY_MODEL: the same preset (its LoRA, gradient
   checkpointing, speed options) with random weights at 1 layer x 32, as `model.from_scratch=true` allows offline.
5. Short: a train.py command gets SHORT for each key it does not set itself (a command's own values, e.g. the sweep's
   `data.batch_size=4,8` or `trainer.max_steps=6`, and an Optuna search space's keys, are what it shows, so they
   stand): one epoch of 2 batches and a validation of 1 batch at its end (so every run and every sweep job has a best
   `val/loss`), blocks of 32 tokens, batches of 2, 4-token sample songs. A command that resumes from a checkpoint
   (`ckpt_path=`, `resume=auto run_dir=`) gets `trainer.max_epochs` one more than the epochs its checkpoint began, so
   it has an epoch to continue; `resume=auto` alone gets RESUMED, the same as the `run_dir=` command before it, since
   it finds its run by the config. generate.py and evaluate.py get SAMPLING.
   The quickstart gets the same shortening, not its 12 epochs (most of this test's time goes to the start-ups of
   torch + Lightning + transformers, one per command): its perplexity curve is a measured figure, and tests never
   time things; the commands after it need its run dir, checkpoints and
   hf_model/, which the short run makes the same way.
6. Checks: exit status 0, no placeholder left, and what the README says the command makes: a training run prints its
   run dir and ends with checkpoints/last.ckpt, hf_model/ and result.json `completed`; a resume goes on from its
   checkpoint's step (no validation at or before it) and, with `run_dir=`, in that run's dir; `resume=auto` alone goes
   on in the latest run this test made with the same command line, else in a new one; a `-m` sweep writes
   summary.csv/summary.md with one completed row per job, one marked **best**, and Optuna's
   optimization_results.yaml; `--cfg` prints YAML and makes no run dir; generate.py prints the songs and writes its
   `output_file=` JSONL; export.py writes `output_dir/` with config.json; evaluate.py writes `<run>/eval/`
   (metrics.json, report.md, samples.jsonl).
A README command that fails because of a bug in the code goes into XFAIL with the reason (a strict xfail, so it
turns into a failure once fixed); the table of each command's time is printed at the end (`pytest -s`).
"""

from __future__ import annotations

import csv
import json
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT, run_env, write_corpus

README = ROOT / "README.md"
ENTRY_POINTS = ("train.py", "generate.py", "export.py", "evaluate.py")

# Rule 4: a hub model's preset at toy size with random weights (no download).
TINY_MODEL = {
    "model.from_scratch": "true",
    "++model.config.n_layer": "1",  # model.config passes keys on to the transformers config (`++`: add or replace)
    "++model.config.n_embd": "32",
    "++model.config.n_head": "2",
}
# Rule 5: every training command, for the keys it leaves unset.
SHORT = {
    "trainer.max_epochs": "1",  # and a validation at its end: every run and sweep job has a best val/loss
    "trainer.limit_train_batches": "2",
    "trainer.limit_val_batches": "1",
    "data.block_size": "32",
    "data.batch_size": "2",
    "callbacks.samples.max_new_tokens": "4",  # each token: top-k and top-p over GPT-2's 50,257 logits
}
RESUMED = {"trainer.max_epochs": "2"}  # resume=auto alone: one epoch more than SHORT's runs
SAMPLING = {"max_new_tokens": "16"}  # generate.py, evaluate.py

QUICKSTART = "python train.py experiment=quickstart"
DEFAULT_RUN = "python train.py"

_INSTALLED = "the environment the tests run in is this step's result (the project installed with pip -e)"
# Commands this test does not run, and why (rule: every README command is run or listed here).
NOT_RUN = {
    "python3 -m venv .venv": _INSTALLED,
    ". .venv/bin/activate": _INSTALLED,
    "pip install -e .": _INSTALLED + "; it needs the network",
    "pip install -e '.[dev]'": _INSTALLED + "; it needs the network",
    "python -m pytest -q": "the test suite itself, this test included",
    "bash .ci/run": "CI's own script: a fresh venv and pip install (network), then the whole suite",
    "tensorboard --logdir outputs": "a server that runs until stopped (the events it shows are checked by "
    "tests/test_sweep.py)",
    "python app.py run_dir=<run>": "a web server that runs until stopped: tests/test_app.py starts it on a free port "
    "with a tiny run and drives the page in headless Chromium",
}

# README commands that fail because of a bug in the code: {command: reason}, run as strict xfails.
XFAIL: dict[str, str] = {}


# --- reading the README -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    line: int  # where it starts in README.md
    text: str  # as written, whitespace collapsed: the key of NOT_RUN and XFAIL

    @property
    def args(self) -> list[str]:
        return shlex.split(self.text)


def strip_comment(line: str) -> str:
    """The line without a trailing shell comment: a `#` after whitespace (or first), outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def split_chain(text: str) -> list[str]:
    """`a && b` as ["a", "b"], each kept as written (quotes included)."""
    parts, start, quote = [], 0, None
    for i, c in enumerate(text):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif text.startswith("&&", i):
            parts.append(text[start:i])
            start = i + 2
    parts.append(text[start:])
    return [" ".join(p.split()) for p in parts if p.strip()]


def readme_commands(text: str) -> list[Command]:
    """The shell commands of README.md in order: ```bash blocks and inline `python|bash|tensorboard ...` spans."""
    found: list[tuple[int, str]] = []
    for block in re.finditer(r"^```bash\n(.*?)^```", text, re.S | re.M):
        first = text.count("\n", 0, block.start(1)) + 1
        pending, start = "", first
        for n, raw in enumerate(block.group(1).splitlines(), first):
            if not pending:
                start = n
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            command = strip_comment(pending + raw)
            pending = ""
            found += [(start, part) for part in split_chain(command)]
    fences = [(m.start(), m.end()) for m in re.finditer(r"^```.*?^```", text, re.S | re.M)]
    for span in re.finditer(r"`((?:python3?|bash|tensorboard) [^`\n]*|python)`", text):
        if not any(a <= span.start() < b for a, b in fences):
            found.append((text.count("\n", 0, span.start()) + 1, " ".join(span.group(1).split())))
    return [Command(line, cmd) for line, cmd in sorted(found, key=lambda f: f[0])]  # a chain keeps its order


def keys_set(args: list[str]) -> set[str]:
    """The config keys a command line sets (`key=value`, `+key=value`, `group=option`)."""
    return {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a and not a.startswith("-")}


def is_runnable(cmd: Command) -> bool:
    args = cmd.args
    return len(args) >= 2 and args[0] in ("python", "python3") and args[1] in ENTRY_POINTS and "..." not in args


# --- the fast checks ----------------------------------------------------------------------------------------------


def test_parser_joins_continued_lines_splits_chains_and_keeps_hashes_in_quotes():
    text = (
        "intro `python train.py a=1` and `pip list`\n"
        "```bash\n"
        "python train.py x=1 \\\n  y=2   # a comment\n"
        "python generate.py prompt='# not a comment' seed=1  # one\n"
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]'\n"
        "```\n"
        "```\n`python not.py`\n```\n"
    )
    assert [(c.line, c.text) for c in readme_commands(text)] == [
        (1, "python train.py a=1"),
        (3, "python train.py x=1 y=2"),
        (5, "python generate.py prompt='# not a comment' seed=1"),
        (6, "python3 -m venv .venv"),
        (6, ". .venv/bin/activate"),
        (6, "pip install -e '.[dev]'"),
    ]


def test_every_readme_command_is_run_or_listed():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    texts = {c.text for c in commands}
    neither = [f"README.md:{c.line}: {c.text}" for c in commands if c.text not in NOT_RUN and not is_runnable(c)]
    assert not neither, "README commands this test neither runs nor lists in NOT_RUN with a reason:\n" + "\n".join(
        neither
    )
    assert not set(NOT_RUN) - texts, f"NOT_RUN lists commands the README no longer has: {set(NOT_RUN) - texts}"
    assert not set(XFAIL) - texts, f"XFAIL lists commands the README no longer has: {set(XFAIL) - texts}"
    assert not set(NOT_RUN) & set(XFAIL)
    assert QUICKSTART in texts, "the quickstart's run stands for <run>"
    assert DEFAULT_RUN in texts, "plain `python train.py`'s run stands for <run> in a train.py command"


# --- running the commands -----------------------------------------------------------------------------------------


def write_user_files(root: Path) -> None:
    """The lyrics and prompt files the README's commands name, in the formats its text describes."""
    write_corpus(root / "my_lyrics.txt", n_songs=30)
    folder = root / "my_lyrics"
    folder.mkdir()
    for i in range(12):  # one song per file
        write_corpus(folder / f"song_{i:02d}.txt", n_songs=1, lines=10 + i)
        text = (folder / f"song_{i:02d}.txt").read_text(encoding="utf-8")
        (folder / f"song_{i:02d}.txt").write_text(text.replace("Song 0", f"File song {i}").replace(" 0\n", f" {i}\n"))
    songs = [
        {
            "title": f"Song {i}",
            "artist": f"Band {i % 10}",  # 10 artists, for data.split_by=artist
            "genre": ["folk", "rock", "country"][i % 3],
            "language": "fr" if i % 10 == 9 else "en",  # a few for data.language=en to drop
            "lyrics": "\n".join(
                f"{w} and the {w}light line {j} of song {i}"
                for j, w in enumerate(["river", "road", "fire", "heart", "rain", "stone"] * 2)
            ),
        }
        for i in range(40)
    ]
    with open(root / "song_lyrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["title", "artist", "genre", "language", "lyrics"])
        writer.writeheader()
        writer.writerows(songs)
    with open(root / "songs.jsonl", "w", encoding="utf-8") as f:  # other column names: data.text_column=words ...
        f.writelines(json.dumps({"name": s["title"], "words": s["lyrics"]}) + "\n" for s in songs)
    with open(root / "old_export.csv", "w", newline="", encoding="latin-1") as f:  # data.encoding=latin-1
        writer = csv.writer(f)
        writer.writerow(["lyrics"])
        writer.writerows([[s["lyrics"].replace("river", "rivière").replace("fire", "feu d'été")] for s in songs])
    (root / "prompts.txt").write_text("Down by the river\n\nOh, Mary\n", encoding="utf-8")


def global_step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]


def epochs_begun(ckpt: Path) -> int:
    """Epochs the checkpoint's run had begun (a checkpoint saved by a validation is inside its epoch)."""
    loops = torch.load(ckpt, map_location="cpu", weights_only=True)["loops"]
    return loops["fit_loop"]["epoch_progress"]["current"]["ready"]


def resume_checkpoint(given: dict[str, str]) -> Path | None:
    """The checkpoint a train.py command names to resume from: `ckpt_path=`, or `run_dir=`'s last.ckpt."""
    if "ckpt_path" in given:
        return Path(given["ckpt_path"])
    if "run_dir" in given:
        return Path(given["run_dir"]) / "checkpoints" / "last.ckpt"
    return None


def best_checkpoint(run: Path) -> Path:
    best = sorted((run / "checkpoints").glob("step*.ckpt"))
    assert best, f"{run}/checkpoints has no best checkpoint (step*-val_loss*.ckpt)"
    return best[-1]


@dataclass
class Project:
    """The copy of the project the commands run in, and what the earlier commands made there."""

    root: Path
    runs: dict[str, Path] = field(default_factory=dict)  # QUICKSTART / DEFAULT_RUN -> its run dir
    latest: dict[frozenset[str], Path] = field(default_factory=dict)  # a run's overrides (no resume keys) -> its dir
    timings: list[tuple[str, float, float]] = field(default_factory=list)  # command, wall s, CPU s

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        env = {**run_env(), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env["OMP_NUM_THREADS"] = "1"  # see rule 1
        before, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(
            [sys.executable, *args[1:]], cwd=self.root, env=env, capture_output=True, text=True, timeout=600
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime
        self.timings.append((shlex.join(args), time.perf_counter() - before, cpu_s))
        return proc

    def run_of(self, name: str) -> Path:
        """The run dir of QUICKSTART or DEFAULT_RUN, running that README command first if it has not run yet."""
        if name not in self.runs:
            proc = self.run(prepare(self, Command(0, name)))
            assert proc.returncode == 0, report(name, proc)
            self.runs[name] = run_dir_of(proc)
        return self.runs[name]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Iterator[Project]:
    root = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a file deleted in the working tree but still tracked is left out
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
    write_user_files(root)
    project = Project(root)
    yield project
    total_wall, total_cpu = sum(t[1] for t in project.timings), sum(t[2] for t in project.timings)
    lines = [f"{wall:6.1f} s {cpu:6.1f} s CPU  {cmd}" for cmd, wall, cpu in project.timings]
    print(f"\nREADME commands: {total_wall:.0f} s wall, {total_cpu:.0f} s CPU\n" + "\n".join(lines))


def prepare(project: Project, cmd: Command) -> list[str]:
    """The README command as this test runs it: placeholders filled in (rule 3), tiny model (4), short (5)."""
    args = cmd.args
    script = args[1]
    needs_run = any(p in cmd.text for p in ("<run>", "outputs/2026-01-01/10-00-00", "/path/to/a/save_pretrained/dir"))
    needs_run |= "model_dir=gpt2" in args
    if needs_run:
        own = script == "train.py" and "experiment=quickstart" not in args
        run = project.run_of(DEFAULT_RUN if own else QUICKSTART)
        hf_model = project.run_of(QUICKSTART) / "hf_model"
        filled = []
        for a in args:
            a = a.replace("outputs/2026-01-01/10-00-00", str(run)).replace("<run>", str(run))
            if "step000120-val_loss3.210.ckpt" in a:
                a = a.replace("step000120-val_loss3.210.ckpt", best_checkpoint(run).name)
            a = a.replace("/path/to/a/save_pretrained/dir", str(hf_model))
            filled.append(f"model_dir={hf_model}" if a == "model_dir=gpt2" else a)
        args = filled
    assert not [a for a in args if re.search(r"<[\w ]+>", a)], f"a placeholder this test does not fill: {args}"

    given = keys_set(args)
    extra: dict[str, str] = {}
    if script == "train.py" and "--cfg" not in args:
        name_or_path = next((a.split("=", 1)[1] for a in args if a.startswith("model.name_or_path=")), None)
        local = name_or_path is not None and Path(name_or_path).is_dir()
        if "experiment=quickstart" not in args and "model=tiny" not in args and not local:  # a hub model
            extra |= TINY_MODEL
        extra |= SHORT
        resumed_ckpt = resume_checkpoint(overrides(args))
        if resumed_ckpt is not None:  # one epoch more than the checkpoint began, so there is an epoch to train
            extra["trainer.max_epochs"] = str(epochs_begun(resumed_ckpt) + 1)
        elif "resume" in given:
            extra |= RESUMED
        search = next((a.split("=", 1)[1] for a in args if a.startswith("hparams_search=")), None)
        if search is not None:  # the search space's keys are the sweep's own, like a command's
            space = yaml.safe_load((project.root / "conf" / "hparams_search" / f"{search}.yaml").read_text())
            given |= set(space["hydra"]["sweeper"]["params"])
    elif script in ("generate.py", "evaluate.py"):
        extra |= SAMPLING
    return args + [f"{k}={v}" for k, v in extra.items() if k.lstrip("+") not in given]


def report(text: str, proc: subprocess.CompletedProcess) -> str:
    out = (proc.stdout + "\n" + proc.stderr).strip()
    return f"`{text}` exited {proc.returncode}:\n{out[-4000:]}"


def run_dir_of(proc: subprocess.CompletedProcess) -> Path:
    """The run dir a train.py run prints first: `run dir: <dir>`, or `... go on in <dir>` when it continues one."""
    found = re.search(
        r"^(?:run dir: (.+)|resuming .+; checkpoints and TensorBoard events go on in (.+))$",
        proc.stdout + proc.stderr,
        re.M,
    )
    assert found, "train.py printed no run dir:\n" + (proc.stdout + proc.stderr)[-3000:]
    return Path(found.group(1) or found.group(2))


def sweep_jobs(args: list[str]) -> int:
    """How many jobs a `-m` command makes: the product of its comma lists, or Optuna's n_trials."""
    trials = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweeper.n_trials=")), None)
    if trials is not None:
        return int(trials)
    n = 1
    for a in args:
        if "=" in a and not a.startswith("-") and "[" not in a:
            n *= len(a.split("=", 1)[1].split(","))
    return n


def outputs(root: Path) -> set[Path]:
    return set((root / "outputs").glob("*/*")) | set((root / "outputs").glob("multirun/*/*"))


def overrides(args: list[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))


def config_key(args: list[str]) -> frozenset[str]:
    """A run's command line without the keys that say where it resumes from: runs alike here have one config."""
    return frozenset(a for a in args if a.split("=", 1)[0] not in ("resume", "run_dir", "ckpt_path"))


def check_train(project: Project, args: list[str], proc: subprocess.CompletedProcess, made: set[Path]) -> Path | None:
    """What the README says a train.py command makes; returns the run dir of a single run."""
    out = proc.stdout + proc.stderr
    if "--cfg" in args:  # prints the config (YAML) and runs nothing
        printed = yaml.safe_load(proc.stdout)
        assert isinstance(printed, dict), f"--cfg printed no YAML config:\n{proc.stdout[-2000:]}"
        assert not made, f"--cfg made run dirs: {made}"
        return None
    if "-m" in args:  # a sweep: summary.csv/summary.md with one completed row per job, the best one marked
        sweeps = [d for d in made if d.parent.parent.name == "multirun"]
        assert len(sweeps) == 1, f"expected one new sweep dir, found {sweeps}"
        with open(sweeps[0] / "summary.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == sweep_jobs(args), rows
        assert all(r["status"] == "completed" and r["val_loss"] for r in rows), rows
        assert "**best**" in (sweeps[0] / "summary.md").read_text(encoding="utf-8")
        if any(a.startswith("hparams_search=") for a in args):
            best = yaml.safe_load((sweeps[0] / "optimization_results.yaml").read_text(encoding="utf-8"))
            assert best["best_params"], best
            assert best["best_value"] > 0, best
        return None

    run = run_dir_of(proc)
    given = overrides(args)
    if given.get("resume") == "auto" and "run_dir" in given:  # continues that run, in its own dir
        assert run == Path(given["run_dir"]), f"resume=auto run_dir= went on in {run}, not in {given['run_dir']}"
    elif given.get("resume") == "auto":  # continues the latest run with this config, else starts one
        expected = project.latest.get(config_key(args))
        assert run == expected if expected else run in made, f"resume=auto went on in {run}, expected {expected}"
    else:
        assert run in made, f"the run dir {run} is not a new dir under outputs/"
    assert (run / "checkpoints" / "last.ckpt").is_file(), f"no {run}/checkpoints/last.ckpt:\n{out[-3000:]}"
    assert (run / "hf_model" / "config.json").is_file(), f"no hf_model/ in {run}"
    assert json.loads((run / "result.json").read_text())["status"] == "completed"
    project.latest[config_key(args)] = run
    return run


@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param(
            c,
            id=f"L{c.line}-{re.sub(r'[^A-Za-z0-9=.,_-]+', '_', c.text.removeprefix('python '))[:70]}",
            marks=[pytest.mark.skip(reason=NOT_RUN[c.text])]
            if c.text in NOT_RUN
            else [pytest.mark.xfail(reason=XFAIL[c.text], strict=True)]
            if c.text in XFAIL
            else [],
        )
        for c in readme_commands(README.read_text(encoding="utf-8"))
        if c.text in NOT_RUN or is_runnable(c)
    ],
)
def test_readme_command(project, cmd):
    args = prepare(project, cmd)
    script, given = args[1], overrides(args)
    resumed_ckpt = resume_checkpoint(given) if script == "train.py" else None
    start = global_step(resumed_ckpt) if resumed_ckpt is not None else None  # the step a resume starts from
    before = outputs(project.root)
    proc = project.run(args)
    assert proc.returncode == 0, report(shlex.join(args), proc)
    made = outputs(project.root) - before

    if script == "train.py":
        run = check_train(project, args, proc, made)
        if cmd.text in (QUICKSTART, DEFAULT_RUN):
            project.runs[cmd.text] = run
        if start is not None:  # the step count goes on from the checkpoint: no validation at or before its step
            validated = [int(n) for n in re.findall(r"^validation at step (\d+)", proc.stdout + proc.stderr, re.M)]
            assert validated, "the resumed run trained no further epoch"
            assert min(validated) > start, f"resumed at step {start}, validated at steps {validated}"
            assert global_step(run / "checkpoints" / "last.ckpt") > start
    elif script == "generate.py":  # the songs on stdout, and the JSONL file
        songs = re.findall(r"^===== song (\d+)/(\d+):", proc.stdout, re.M)
        assert songs, f"no songs on stdout:\n{proc.stdout[-2000:]}"
        assert len(songs) == int(songs[0][1]), proc.stdout[-2000:]
        if "output_file" in given:
            records = [json.loads(line) for line in (project.root / given["output_file"]).read_text().splitlines()]
            assert len(records) == len(songs)
            assert all("text" in r and "temperature" in r for r in records)  # the songs, not the lyrics read
    elif script == "export.py":  # a save_pretrained folder, with the list of the files the export wrote
        folder = Path(given.get("output_dir") or Path(given["ckpt_path"]).parents[1] / "hf_model")
        folder = folder if folder.is_absolute() else project.root / folder
        assert (folder / "config.json").is_file()
        assert (folder / ".lyric_lm_export.json").is_file()
    elif script == "evaluate.py":  # <run>/eval/, or <stem>_eval/ beside a songs_file
        if "songs_file" in given:  # lyrics scored without a model: no samples of its own
            songs = project.root / given["songs_file"]
            folder = songs.parent / f"{songs.stem}_eval"
        else:
            folder = Path(given["ckpt_path"]).parents[1] / "eval"
            assert (folder / "samples.jsonl").is_file()
        assert json.loads((folder / "metrics.json").read_text())
        assert (folder / "report.md").is_file()
