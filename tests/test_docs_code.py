"""Every code example in the documentation runs in CI, or is explicitly marked and listed as not run.

The rules, for every ``docs/*.md`` and ``docs/rules/*.md`` page (``bash`` and other shell or data blocks are exempt):

1. Every fenced block names its language (one of ``CHECKED`` or ``EXEMPT``).
2. A ``python`` block is one of:

   - an **include** of example files, the block holding nothing but a ``pymdownx.snippets`` block: a line
     ``--8<--``, one ``path[:section]`` per line (``examples/migrate_keras.py:before``), a line ``--8<--``.
     (Not the one-line form ``--8<-- "path"``: ``ruff format`` reads it as Python and rewrites it.) Each file
     must be run by this module (``examples/migrate_*.py``, each in a fresh process), be run by another test
     (``TESTED_ELSEWHERE``), or be a listed file that cannot run here (``NOT_RUN_FILES``, named ``*.py.txt``:
     parsed and import-checked only);
   - **illustrative**: the line right before its fence is ``<!-- not run: <why> -->``, and the block is listed
     in ``ILLUSTRATIVE`` below by page and first line. An unlisted tagged block fails, so a new untested
     block cannot slip in without a reviewed change to this file;
   - otherwise it is **run**: the page's python and ``pycon`` blocks run in order, in one namespace seeded
     by the page's ``FIXTURES`` (stand-ins for "your model", "your data"), in a temporary directory.

3. A ``pycon`` block runs as a doctest: its printed output is checked.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import importlib.util
import itertools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import tiny_bert_config

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

CHECKED = {"python", "pycon"}
EXEMPT = {"bash", "sh", "console", "text", "json", "toml", "yaml", "csv"}
NOT_RUN_TAG = re.compile(r"^<!--\s*not run:\s*(?P<why>\S.*?)\s*-->$")
SNIPPET_MARKER = re.compile(r"^-+8<-+$")
SNIPPET_INLINE = re.compile(r"^;*-+8<-+\s")
INCLUDE = re.compile(r"^(?P<path>[^\s:]+)(?::(?P<section>[A-Za-z][-_0-9A-Za-z]*))?$")

# Illustrative python blocks: (page, first line of code). Keep this list short; prefer running the code.
ILLUSTRATIVE = {
    ("sweeps.md", "if trial.should_prune():"),
    ("sweeps.md", "from ray import tune"),
    ("index.md", "from ray import tune"),
    ("sweeps.md", "from ray.tune.stopper import TrialPlateauStopper"),
    ("sweeps.md", 'study = optuna.create_study(pruner=MonitorPruner(policy="policy.json"))'),
    ("resuming.md", "# train.py, started on every rank by: torchrun --nproc_per_node=4 train.py"),
}
# Example files the guides include but that cannot run here (the framework is not installable in CI).
NOT_RUN_FILES: dict[str, str] = {}
# Example files run by another test, which the docs may include.
TESTED_ELSEWHERE = {
    "examples/keras_digits.py": "tests/test_examples.py",
    "examples/torch_digits.py": "tests/test_adapter_torch.py",
}
# What each executed example must print (its own check of the behaviour the guide promises).
EXPECTED_OUTPUT = {
    "migrate_keras.py": (
        "drop-in: same epochs and bitwise the same restored weights as Keras: True",
        "coordinated: kept an epoch with a lower val_loss: True",
    ),
    "migrate_lightning.py": ("same stop epoch as Lightning: True",),
    "migrate_pytorch.py": ("same stop epoch and bitwise the same restored weights as the hand-written loop: True",),
    "migrate_huggingface.py": ("patience 3); best", "restoring the weights of epoch"),
    "migrate_huggingface_trainer.py": (
        "same stop step as Hugging Face's callback: True",
        "bitwise the weights of Hugging Face's best checkpoint: True",
    ),
}
EXAMPLE_NEEDS = {
    "migrate_keras.py": ("keras", "sklearn"),
    "migrate_lightning.py": ("pytorch_lightning", "sklearn"),
    "migrate_pytorch.py": ("torch", "sklearn"),
    "migrate_huggingface.py": ("torch", "sklearn"),
    "migrate_huggingface_trainer.py": ("transformers", "accelerate"),
}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    tag: str | None  # the reason of a `<!-- not run: ... -->` line right before the fence

    @property
    def first_line(self) -> str:
        return next((line.strip() for line in self.code.splitlines() if line.strip()), "")

    @property
    def includes(self) -> list[re.Match[str]] | None:
        """The included paths, when the block is one snippet block and nothing else."""
        lines = [line.strip() for line in self.code.splitlines() if line.strip()]
        if len(lines) < 3 or not (SNIPPET_MARKER.match(lines[0]) and SNIPPET_MARKER.match(lines[-1])):
            return None
        matches = [INCLUDE.match(line) for line in lines[1:-1]]
        return [m for m in matches if m is not None] if all(matches) else None

    @property
    def has_snippet_syntax(self) -> bool:
        return any(
            SNIPPET_MARKER.match(line.strip()) or SNIPPET_INLINE.match(line.strip()) for line in self.code.splitlines()
        )


def blocks(page: Path) -> Iterator[Block]:
    """The fenced code blocks of a page (fences may be indented, as in admonitions and lists)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    opening = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
    i = 0
    while i < len(lines):
        match = opening.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        info = match["info"].strip().lstrip("{").lstrip(".")
        language = re.split(r"[\s{}]", info, maxsplit=1)[0] if info else ""
        previous = lines[i - 1].strip() if i > 0 else ""
        tag = NOT_RUN_TAG.match(previous)
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        name = page.relative_to(DOCS).as_posix()
        assert j < len(lines), f"{name}:{i + 1}: the code block is never closed"
        yield Block(name, i + 1, language, "\n".join(body) + "\n", tag["why"] if tag else None)
        i = j + 1


PAGES = sorted([*DOCS.glob("*.md"), *DOCS.glob("rules/*.md")])
ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


def runnable(block: Block) -> bool:
    if block.language == "pycon":
        return True
    return block.language == "python" and block.includes is None and block.tag is None


def test_every_block_names_a_known_language() -> None:
    unknown = [
        f"{b.page}:{b.line} ({b.language or 'no language'})" for b in ALL_BLOCKS if b.language not in CHECKED | EXEMPT
    ]
    assert not unknown, f"name the language of each code block, one of {sorted(CHECKED | EXEMPT)}: {unknown}"


def test_python_blocks_are_included_run_or_listed() -> None:
    problems = []
    tagged = set()
    for block in ALL_BLOCKS:
        where = f"{block.page}:{block.line}"
        if block.tag is not None:
            if block.language != "python":
                problems.append(f"{where}: only python blocks can be tagged 'not run'")
            elif (block.page, block.first_line) not in ILLUSTRATIVE:
                problems.append(f"{where}: an illustrative block not listed in ILLUSTRATIVE; run it or list it")
            tagged.add((block.page, block.first_line))
        if block.language != "python":
            continue
        if block.has_snippet_syntax and block.includes is None:
            problems.append(f"{where}: an include must be a snippet block (--8<--, paths, --8<--) alone in its block")
        for include in block.includes or []:
            problems.extend(f"{where}: {problem}" for problem in check_include(include["path"], include["section"]))
    stale = ILLUSTRATIVE - tagged
    assert not stale, f"ILLUSTRATIVE lists blocks that are no longer in the docs (or no longer tagged): {stale}"
    assert not problems, "\n".join(problems)


def check_include(path: str, section: str | None) -> list[str]:
    file = ROOT / path
    if not file.is_file():
        return [f"includes {path}, which does not exist"]
    executed = file.parent == EXAMPLES and file.name.startswith("migrate_") and file.suffix == ".py"
    if not (executed or path in NOT_RUN_FILES or path in TESTED_ELSEWHERE):
        return [f"includes {path}, which no test runs: use examples/migrate_*.py, or list it"]
    text = file.read_text(encoding="utf-8")
    if section is not None and not all(f"--8<-- [{edge}:{section}]" in text for edge in ("start", "end")):
        return [f"includes section {section!r} of {path}, which has no such section"]
    return []


def test_files_that_are_not_run_are_listed_parsed_and_import_what_exists() -> None:
    on_disk = {str(path.relative_to(ROOT)) for path in EXAMPLES.glob("*.py.txt")}
    assert on_disk == set(NOT_RUN_FILES), "every examples/*.py.txt (not run) must be listed in NOT_RUN_FILES"
    for name in NOT_RUN_FILES:
        text = (ROOT / name).read_text(encoding="utf-8")
        assert text.startswith("# NOT RUN."), f"{name} must say at its top that it is not run, and why"
        for node in ast.walk(ast.parse(text, filename=name)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("earlystop_core"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name} imports {alias.name} from {node.module}"


# -- the code blocks of each page, run in order in one namespace ----------------------------------------------


def keras_model() -> dict[str, Any]:
    """A small compiled Keras model on noise, so validation loss stops improving within a few epochs."""
    keras = pytest.importorskip("keras")
    import numpy as np

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    x, y = rng.normal(size=(64, 8)).astype("float32"), rng.normal(size=(64, 1)).astype("float32")
    return {"model": model, "x": x, "y": y}


def any_loop() -> dict[str, Any]:
    """``validate()`` returns a loss that bottoms out at epoch 20; ``snapshot``/``load`` stand for the weights."""
    epochs = itertools.count()
    state: dict[str, Any] = {"epoch": -1, "loaded": None}

    def validate() -> float:
        state["epoch"] = next(epochs)
        return abs(state["epoch"] - 20) / 20 + 0.1

    def load(snapshot: int) -> None:
        state["loaded"] = snapshot

    return {"validate": validate, "snapshot": lambda: state["epoch"], "load": load, "_loop": state}


def plateau_loop() -> dict[str, Any]:
    """``train_and_validate(lr)`` improves for 8 epochs, then stays flat whatever the learning rate."""
    epochs = itertools.count()
    return {"train_and_validate": lambda lr: {"val_loss": max(0.2, 1.0 - 0.1 * next(epochs))}}


def torch_loop() -> dict[str, Any]:
    """A torch model and optimizer; ``validate(model)`` returns a loss whose best is at epoch 3."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = iter([0.9, 0.7, 0.8, 0.6, 0.65, 0.62, 0.61, 0.7, 0.8, 0.9])
    weights: list[dict[str, Any]] = []

    def train_one_epoch(model: Any, optimizer: Any) -> None:
        optimizer.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        optimizer.step()

    def validate(model: Any) -> float:
        weights.append({name: value.clone() for name, value in model.state_dict().items()})
        return next(losses)

    return {
        "model": model,
        "optimizer": optimizer,
        "train_one_epoch": train_one_epoch,
        "validate": validate,
        "_weights": weights,
    }


def restored_the_best_epoch(namespace: dict[str, Any]) -> None:
    assert namespace["_loop"]["loaded"] == 20, "the loop on index.md should restore epoch 20, its best"


def resumed_and_restored_the_best_epoch(namespace: dict[str, Any]) -> None:
    import torch

    # Keras: a fresh run from the restart could not stop within patience (3) epochs of it; the resumed one does.
    restart = namespace["saved"]["epoch"] + 1
    assert namespace["early_stopping"].core.stopped_epoch < restart + 3, "resuming.md: the Keras run restarted"
    monitor = namespace["stopper"].monitor
    assert (monitor.best_epoch, monitor.stopped_epoch) == (3, 6), "resuming.md: stop at 6, best 3 (before the restart)"
    best, now = namespace["_weights"][3], namespace["model"].state_dict()
    assert all(torch.equal(now[name], best[name]) for name in best), "resuming.md: not the weights of epoch 3"


def needs_torch() -> dict[str, Any]:
    pytest.importorskip("torch")
    return {}


def needs_transformers() -> dict[str, Any]:
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    return {}


def stopped_and_restored_the_best_evaluation(namespace: dict[str, Any]) -> None:
    monitor, trainer = namespace["monitor"], namespace["trainer"]
    losses = [entry["eval_loss"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert monitor.stop_reason.name == "PATIENCE_EXHAUSTED", "huggingface.md: the Trainer did not stop early"
    assert monitor.best_epoch == losses.index(min(losses))


def needs_jax() -> dict[str, Any]:
    pytest.importorskip("jax")
    return {}


def lightning_fit() -> dict[str, Any]:
    pytest.importorskip("pytorch_lightning")
    from test_adapter_lightning import Noisy, loaders

    train_loader, val_loader = loaders()
    return {"module": Noisy(), "train_loader": train_loader, "val_loader": val_loader}


def hugging_face_model() -> dict[str, Any]:
    """A tiny BERT built from a config, and made-up examples: the home page's "yours"."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    config = tiny_bert_config(transformers)
    torch.manual_seed(0)
    ids = torch.randint(1, 32, (80, 8), generator=torch.Generator().manual_seed(0))
    examples = [{"input_ids": row, "labels": int(row[0] > 16)} for row in ids]
    return {
        "model": transformers.BertForSequenceClassification(config),
        "train_dataset": examples[:48],
        "eval_dataset": examples[48:],
    }


def jax_regression() -> dict[str, Any]:
    """Parameters of a small network, its loss and a jitted SGD step, on noisy data it overfits."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    key_x, key_noise, key_w = jax.random.split(jax.random.PRNGKey(0), 3)
    x = jax.random.normal(key_x, (48, 4))
    y = x[:, :1] + 0.8 * jax.random.normal(key_noise, (48, 1))

    def loss(params: Any, x: Any, y: Any) -> Any:
        return jnp.mean((jax.nn.relu(x @ params["w"]) @ params["v"] - y) ** 2)

    @jax.jit
    def train_step(params: Any, x: Any, y: Any) -> Any:
        return jax.tree.map(lambda p, g: p - 0.05 * g, params, jax.grad(loss)(params, x, y))

    params = {"w": 0.5 * jax.random.normal(key_w, (4, 64)), "v": jnp.zeros((64, 1))}
    return {
        "params": params,
        "loss": loss,
        "train_step": train_step,
        "x_train": x[:24],
        "y_train": y[:24],
        "x_val": x[24:],
        "y_val": y[24:],
    }


def home_page_ran(namespace: dict[str, Any]) -> None:
    restored_the_best_epoch(namespace)
    assert namespace["callback"].core.stop_reason.name == "PATIENCE_EXHAUSTED", "index.md: Keras did not stop"
    assert namespace["stopper"].monitor.stopped_epoch is not None, "index.md: JAX did not stop"
    core = namespace["early_stopping"].core
    assert core.stop_reason.name == "PATIENCE_EXHAUSTED", "index.md: the Hugging Face Trainer did not stop"
    states = [trial.state.name for trial in namespace["study"].trials]
    assert "COMPLETE" in states and "PRUNED" not in states, "index.md: stopped trials should complete at their best"
    assert any(trial.last_step < 29 for trial in namespace["study"].trials), "index.md: no Optuna trial stopped"


def stopped_and_restored(namespace: dict[str, Any]) -> None:
    stopper = namespace["early_stopping"]
    core = stopper.core if hasattr(stopper, "core") else stopper.monitor
    assert core.stop_reason.name == "PATIENCE_EXHAUSTED" and core.best_epoch < core.stopped_epoch


# What a page's blocks use without defining it ("your model", "your data"), by page.
FIXTURES: dict[str, Callable[[], dict[str, Any]]] = {
    "index.md": lambda: {**any_loop(), **keras_model()},
    "keras.md": keras_model,
    "rules.md": plateau_loop,
    "resuming.md": lambda: {**needs_torch(), **keras_model()},
    "migrate-pytorch.md": needs_torch,
    "torch.md": needs_torch,
    "huggingface.md": needs_transformers,
    "lightning.md": lightning_fit,
    "jax.md": needs_jax,
    "sweeps.md": lambda: {"optuna": pytest.importorskip("optuna")},
}
# Fixtures that replace those of the page from a given block on (page, first line): a page moving to PyTorch.
BLOCK_FIXTURES: dict[tuple[str, str], Callable[[], dict[str, Any]]] = {
    ("resuming.md", "import torch"): torch_loop,
    ("index.md", "import pytorch_lightning as pl"): lightning_fit,
    ("index.md", "import transformers"): hugging_face_model,
    ("index.md", "import jax"): jax_regression,
}
# A check after a page ran: that its code did what the page says.
AFTERWARDS: dict[str, Callable[[dict[str, Any]], None]] = {
    "index.md": home_page_ran,
    "resuming.md": resumed_and_restored_the_best_epoch,
    "huggingface.md": stopped_and_restored_the_best_evaluation,
    "lightning.md": stopped_and_restored,
    "jax.md": lambda namespace: stopped_and_restored({"early_stopping": namespace["stopper"]}),
    "sweeps.md": lambda namespace: None if namespace["pruned"] else pytest.fail("sweeps.md: no trial was pruned"),
}

RUN_PAGES = sorted({block.page for block in ALL_BLOCKS if runnable(block)})


@pytest.mark.parametrize("page", RUN_PAGES)
def test_page_code_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files the examples write land here
    namespace: dict[str, Any] = {"__name__": f"docs_{page.removesuffix('.md').replace('-', '_').replace('/', '_')}"}
    namespace.update(FIXTURES.get(page, dict)())
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for block in (b for b in ALL_BLOCKS if b.page == page and runnable(b)):
        name = f"docs/{page}:{block.line}"
        if (page, block.first_line) in BLOCK_FIXTURES:
            namespace.update(BLOCK_FIXTURES[page, block.first_line]())
        if block.language == "python":
            exec(compile("\n" * block.line + block.code, str(DOCS / page), "exec"), namespace)  # page line numbers
            continue
        test = doctest.DocTestParser().get_doctest(block.code, namespace, name, str(DOCS / page), block.line)
        report: list[str] = []
        result = runner.run(test, out=report.append, clear_globs=False)
        namespace.update(test.globs)  # a DocTest runs in a copy of the namespace
        assert result.failed == 0, "".join(report)
    if page in AFTERWARDS:
        AFTERWARDS[page](namespace)


# -- the examples, each in a fresh process ---------------------------------------------------------------------

EXAMPLE_FILES = sorted(path.name for path in EXAMPLES.glob("migrate_*.py"))


@pytest.fixture(scope="module", autouse=True)
def started_examples(request: pytest.FixtureRequest) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """The selected examples, all started when this module's first test starts, so they run beside the pages."""
    selected = {
        item.callspec.params["name"]
        for item in request.session.items
        if getattr(item, "module", None) is request.module
        and getattr(item, "originalname", None) == "test_example_runs"
    }
    environment = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "1"}
    processes = {}
    for name in sorted(selected):
        if all(importlib.util.find_spec(module) is not None for module in EXAMPLE_NEEDS.get(name, ())):
            processes[name] = subprocess.Popen(
                [sys.executable, str(EXAMPLES / name)],
                cwd=ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
    yield processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_runs(name: str, started_examples: dict[str, subprocess.Popen[str]]) -> None:
    assert name in EXPECTED_OUTPUT and name in EXAMPLE_NEEDS, f"say what {name} needs and must print"
    if name not in started_examples:
        pytest.skip(f"{name} needs {', '.join(EXAMPLE_NEEDS[name])}")
    out, err = started_examples[name].communicate(timeout=180)
    assert started_examples[name].returncode == 0, err
    missing = [line for line in EXPECTED_OUTPUT[name] if line not in out]
    assert not missing, f"{name} did not print {missing}:\n{out}"


# -- command output shown on a page is the command's real output --------------------------------------------------

# The marker and block docs/scripts/command_outputs.py rewrites: the test reads them with the script's own pattern.
_spec = importlib.util.spec_from_file_location("command_outputs", DOCS / "scripts" / "command_outputs.py")
assert _spec is not None and _spec.loader is not None
command_outputs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(command_outputs)
SHOWN_OUTPUTS = [
    (page.relative_to(DOCS).as_posix(), match["command"], match["output"])
    for page in PAGES
    for match in command_outputs.SHOWN.finditer(page.read_text(encoding="utf-8"))
]


def test_pages_show_some_command_output() -> None:
    assert any(page == "index.md" for page, _, _ in SHOWN_OUTPUTS), "the home page shows what replay prints"


@pytest.mark.parametrize(("page", "command", "shown"), SHOWN_OUTPUTS)
def test_shown_command_output_is_what_the_command_prints(page: str, command: str, shown: str) -> None:
    printed = command_outputs.printed(command)  # exits with the command's status if it fails
    assert printed == shown, f"docs/{page}: the output shown for `{command}` is stale; it now prints:\n{printed}"
