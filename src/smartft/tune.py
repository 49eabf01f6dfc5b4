"""`smartft tune`: the fair selection protocol as one command, on Optuna.

Every trial picks a method and its settings, trains on the training set minus a held-out part
(`--holdout_fraction`, drawn with `data_seed + 1`, so every trial holds out the same examples) and
is scored on that part at the end of its budget; dev is never read during the search. Trials
report their held-out score at every evaluation, so a pruner stops bad ones early. The study lives
in an Optuna storage (a SQLite file in the output folder by default, `postgresql://...` for
workers on several machines): the same command started again, or on other processes or machines
against the same storage, joins the study. Workers send heartbeats, so the trial of a worker that
died is marked failed by the next worker that looks, and the study carries on.

Each method's first trial is queued before the sampler (TPE) starts choosing, so every method
is tried at least once. At the end: `best.yaml` (the best trial's training options, for
`smartft train --config`), `tune-report.md` (the best per method, every trial, the settings'
importance, a plot) and, with `--final_seeds`, the winner and plain at their chosen settings on
the full training set, dev read once per run, with the paired report (`final.md`).
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from smartft.config import resolve
from smartft.errors import ConfigError, SmartftError
from smartft.recipe import FineTuneRecipe
from smartft.report import collect, markdown, summarize
from smartft.sweep import SWEEP_FILE

# a worker's trial with no heartbeat for twice this many seconds is failed by the next worker
# that looks (SMARTFT_TUNE_HEARTBEAT: seconds, for a quicker verdict on a busy cluster, or tests)
HEARTBEAT_ENV = "SMARTFT_TUNE_HEARTBEAT"
# settings no trial may choose: the protocol owns them
PROTOCOL = {
    "holdout_fraction", "score_dev_at_end", "eval_strategy", "load_best_model_at_end",
    "save_model", "save_strategy", "output_dir", "overwrite_output_dir", "do_predict",
    "resume_from_checkpoint",
}  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One searched setting: a float or int range (log-scaled if `log`), or a list of choices."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any, name: str) -> Any:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        assert self.low is not None and self.high is not None
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, float(self.low), float(self.high), log=self.log)


# Each method's own settings, at ranges around its paper's values; "*" applies to every method.
DEFAULT_SPACE: dict[str, dict[str, Param]] = {
    "*": {
        "learning_rate": Param(1e-5, 1e-4, log=True),
        "num_train_epochs": Param(2, 6, integer=True),
    },
    "smart": {"smart_lambda": Param(0.3, 10.0, log=True)},  # the paper: λ_s in {1, 3, 5}
    "alice": {"alice_adv_lambda": Param(0.3, 10.0, log=True)},
    "r3f": {"r3f_lambda": Param(0.1, 5.0, log=True)},  # the paper: {0.1, 0.5, 1, 5}
    "r4f": {"r3f_lambda": Param(0.1, 5.0, log=True)},
    "mixout": {"mixout_p": Param(0.1, 0.9)},  # the paper: 0.1 to 0.9
    "child_tuning": {"child_reserve": Param(0.1, 0.5)},  # the paper: {0.1, 0.2, 0.3}
    "lnsr": {"lnsr_lambda": Param(0.1, 10.0, log=True)},
    "dps": {"dps_keep": Param(0.1, 0.5)},
    "neftune": {"neftune_alpha": Param(1.0, 15.0)},  # the paper: 5, 10, 15
    "l2sp": {"l2sp_alpha": Param(1e-4, 1.0, log=True)},
}


def parse_param(where: str, value: Any) -> Param:
    """YAML's forms: a list (choices), a mapping {low, high, log} (a range: int when both ends
    are integers and `log` is not given as a float range), or one value (fixed)."""
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: an empty list of choices")
        return Param(choices=tuple(value))
    if isinstance(value, dict):
        unknown = set(value) - {"low", "high", "log"}
        if unknown or "low" not in value or "high" not in value:
            raise ConfigError(f"{where}: a range is {{low: ..., high: ..., log: true|false}}")
        low, high = value["low"], value["high"]
        if not all(isinstance(v, int | float) for v in (low, high)) or low > high:
            raise ConfigError(f"{where}: low and high must be numbers, low <= high")
        integer = isinstance(low, int) and isinstance(high, int)
        return Param(low, high, bool(value.get("log", False)), integer)
    return Param(choices=(value,))


def search_space(methods: list[str], path: str | None) -> dict[str, dict[str, Param]]:
    """Each method's searched settings: the defaults, with a `--search` YAML file's entries
    (`"*"` or a method name, then setting: range) put over them."""
    space = {m: {**DEFAULT_SPACE["*"], **DEFAULT_SPACE.get(m, {})} for m in methods}
    if path is None:
        return space
    try:
        given = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--search {path}: {err}") from None
    if not isinstance(given, dict):
        raise ConfigError(f"--search {path}: expected a mapping of methods to settings")
    for owner, settings in given.items():
        if owner != "*" and owner not in methods:
            raise ConfigError(f"--search {path}: '{owner}' is not one of --methods")
        if not isinstance(settings, dict):
            raise ConfigError(f"--search {path}: '{owner}' must map settings to ranges")
        for name, value in settings.items():
            if name in PROTOCOL:
                raise ConfigError(f"--search {path}: {name} belongs to the protocol")
            param = parse_param(f"--search {path}: {owner}.{name}", value)
            for method in methods if owner == "*" else [owner]:
                space[method][name] = param
    return space


def trial_name(method: str, name: str) -> str:
    """The Optuna name of a setting: one distribution per name across the study, so a setting
    a method owns is named with the method when two methods search it differently."""
    return name if name in DEFAULT_SPACE["*"] else f"{method}.{name}"


class TrialRecipe(FineTuneRecipe):
    """One trial's training run: the recipe, reporting every held-out evaluation to Optuna and
    stopping when the pruner says so."""

    def __init__(self, run: Any, trial: Any) -> None:
        self.trial = trial
        super().__init__(run)

    def evaluate(self, position: float) -> None:
        super().evaluate(position)
        import optuna

        value = self.last_eval
        self.trial.report(value, step=self.loop.step)
        if self.trial.should_prune():
            self.log.write({"event": "pruned", "step": self.loop.step, "value": value})
            raise optuna.TrialPruned(f"pruned at update {self.loop.step} ({value:.4f})")

    def dev_metrics(self) -> dict[str, float]:
        metrics = super().dev_metrics()
        self.last_eval = float(metrics[self.main_metric])
        return metrics


@dataclass
class Tuner:
    """One worker of a study: the base options, the methods and their search space."""

    base: dict[str, Any]
    methods: list[str]
    space: dict[str, dict[str, Param]]
    out: Path
    holdout_fraction: float

    def options(self, method: str, chosen: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A trial's training options: the base ones this method uses (a `--smart_eps` given
        for the SMART trials is left out of the others), its settings, the protocol's."""
        return {**for_method(self.base, method), "method": method, **chosen, **extra}

    def objective(self, trial: Any) -> float:
        method = trial.suggest_categorical("method", self.methods)
        chosen = {
            name: param.suggest(trial, trial_name(method, name))
            for name, param in self.space[method].items()
        }
        folder = self.out / "trials" / f"trial-{trial.number:04d}"
        trial.set_user_attr("output_dir", str(folder))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("settings", json.dumps(chosen))
        options = self.options(
            method,
            chosen,
            output_dir=str(folder),
            overwrite_output_dir=True,
            holdout_fraction=self.holdout_fraction,
            eval_strategy="epoch",
            load_best_model_at_end=False,
            save_model=False,
            save_strategy="no",
        )
        try:
            run = resolve(options, yaml_name="tune trial")
            results = TrialRecipe(run, trial).train()
        except (SmartftError, ValueError, RuntimeError) as err:  # the report says why
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:300])
            raise
        value = results.get(f"eval_{results['main_metric']}")
        if value is None or not math.isfinite(float(value)):
            raise SmartftError(f"trial {trial.number}: no finite held-out score")
        return float(value)


def for_method(options: dict[str, Any], method: str) -> dict[str, Any]:
    """The options that `method` uses: the training options and its own config classes'."""
    from dataclasses import fields

    from smartft.config import TrainConfig, all_config_classes
    from smartft.methods import get_method

    used = {TrainConfig, *get_method(method).config_classes}
    other = {f.name for cls in all_config_classes() if cls not in used for f in fields(cls)} - {
        f.name for cls in used for f in fields(cls)
    }
    return {k: v for k, v in options.items() if k not in other}


def storage_url(storage: str | None, out: Path) -> str:
    """The study's storage: a SQLite file in the output folder by default; a PostgreSQL URL is
    given the psycopg (3) driver when psycopg2 is not installed."""
    if storage is None:
        return f"sqlite:///{(out / 'study.db').resolve()}"
    if storage.startswith("postgresql://"):
        import importlib.util

        if importlib.util.find_spec("psycopg2") is None:
            return "postgresql+psycopg://" + storage.removeprefix("postgresql://")
    return storage


def make_pruner(name: str, below: float | None) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    if name == "threshold":
        if below is None:
            raise ConfigError("--pruner threshold needs --prune_below (e.g. chance accuracy)")
        return optuna.pruners.ThresholdPruner(lower=below)
    return optuna.pruners.NopPruner()


def open_study(name: str, url: str, pruner: Any, seed: int | None, tries: int = 5) -> Any:
    """Create or join the study. Workers started together race to create the storage's tables
    (PostgreSQL refuses the second `CREATE TYPE`, SQLite the second `CREATE TABLE`, or finds
    the file locked): the loser tries again, and then finds the tables made."""
    import optuna
    import sqlalchemy.exc

    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                beat = int(os.environ.get(HEARTBEAT_ENV, "60"))
                storage = optuna.storages.RDBStorage(
                    url, heartbeat_interval=beat, grace_period=2 * beat
                )
            return optuna.create_study(
                study_name=name,
                storage=storage,
                direction="maximize",  # every task metric here is higher-is-better
                pruner=pruner,
                sampler=optuna.samplers.TPESampler(seed=seed),
                load_if_exists=True,
            )
        except (
            sqlalchemy.exc.IntegrityError,
            sqlalchemy.exc.ProgrammingError,
            sqlalchemy.exc.OperationalError,
        ) as error:
            attempt += 1
            if attempt == tries or not lost_the_race(error):
                raise
            time.sleep(float(attempt))


def lost_the_race(error: Exception) -> bool:
    """Whether an error creating the study is another worker's doing (retry) rather than a
    real fault, such as a folder that cannot be opened (raise at once)."""
    import sqlalchemy.exc

    if not isinstance(error, sqlalchemy.exc.OperationalError):
        return True
    text = str(error.orig)
    return "already exists" in text or "database is locked" in text


def run_tune(
    base: dict[str, Any],
    methods: list[str],
    out: Path,
    n_trials: int,
    storage: str | None = None,
    study_name: str | None = None,
    pruner: str = "median",
    prune_below: float | None = None,
    search: str | None = None,
    final_seeds: list[int] | None = None,
    sampler_seed: int | None = None,
    say: Any = print,
) -> dict[str, Any]:
    """Run this worker's trials, then write best.yaml and the report (and the final seeds)."""
    import optuna

    check(base, methods, final_seeds)
    holdout = float(base.pop("holdout_fraction", 0.1))
    if not 0 < holdout < 1:
        raise ConfigError("smartft tune needs --holdout_fraction in (0, 1): dev is never searched")
    out.mkdir(parents=True, exist_ok=True)
    tuner = Tuner(base, methods, search_space(methods, search), out, holdout)
    resolve(tuner.options(methods[0], {}), yaml_name="tune")  # wrong options fail before trials
    study = open_study(
        study_name or out.name, storage_url(storage, out), make_pruner(pruner, prune_below),
        sampler_seed,
    )  # fmt: skip
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.process_time()
    tried = {t.params.get("method") for t in study.get_trials(deepcopy=False)}
    for method in methods:  # every method's first trial comes before the sampler chooses
        if method not in tried:
            study.enqueue_trial({"method": method}, skip_if_exists=True)
    if n_trials > 0:
        # a failing trial is recorded as FAIL and the study goes on
        study.optimize(
            tuner.objective,
            n_trials=n_trials,
            catch=(SmartftError, ValueError, RuntimeError),
            callbacks=[lambda study, trial: say(progress(study, trial))],
        )
    say(f"tune: this worker spent {time.process_time() - started:.0f} s of CPU on its trials")
    summary = write_outputs(study, tuner)
    if final_seeds:
        summary["final"] = str(run_final(study, tuner, final_seeds, say))
    return summary


def progress(study: Any, trial: Any) -> str:
    """One line per finished trial: its state and score, and the best so far."""
    method = trial.params.get("method", "?")
    value = "" if trial.value is None else f" held-out {trial.value:.4f}"
    line = f"tune: trial {trial.number} ({method}) {trial.state.name.lower()}{value}"
    try:
        best = study.best_trial
    except ValueError:  # no trial has completed
        return line
    return line + f"; best so far {best.value:.4f} (trial {best.number}, {best.params['method']})"


def check(base: dict[str, Any], methods: list[str], final_seeds: list[int] | None) -> None:
    from smartft.methods import METHODS

    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: unknown {', '.join(unknown)} (known: {', '.join(METHODS)})")
    owned = sorted(set(base) & (PROTOCOL - {"holdout_fraction"}))
    if owned:
        raise ConfigError(f"smartft tune sets {', '.join(owned)} itself; remove it")
    if final_seeds and "plain" not in methods:
        raise ConfigError("--final_seeds compares the winner with plain: add plain to --methods")


def best_trials(study: Any) -> dict[str, Any]:
    """The best complete trial of each method."""
    import optuna

    best: dict[str, Any] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        method = trial.params["method"]
        if method not in best or trial.value > best[method].value:
            best[method] = trial
    return best


def trial_options(tuner: Tuner, trial: Any) -> dict[str, Any]:
    """The training options a trial chose (base, method, settings), for the full training set."""
    chosen = json.loads(trial.user_attrs.get("settings", "{}"))
    return tuner.options(trial.params["method"], chosen)


def write_outputs(study: Any, tuner: Tuner) -> dict[str, Any]:
    """best.yaml, tune-report.md (and a plot where matplotlib is installed)."""
    best = best_trials(study)
    report = tuner.out / "tune-report.md"
    report.write_text(report_text(study, best), encoding="utf-8")
    plot_history(study, tuner.out / "tune-history.png")
    if not best:
        raise SmartftError(f"no trial has completed yet: nothing to choose (see {report})")
    winner = max(best.values(), key=lambda t: t.value)
    options = trial_options(tuner, winner)
    header = (
        f"# smartft tune: trial {winner.number} of study {study.study_name}, held-out "
        f"{winner.value:.4f}; train on the full training set with\n"
        "#   smartft train --config best.yaml --output_dir DIR\n"
    )
    (tuner.out / "best.yaml").write_text(
        header + yaml.safe_dump(options, sort_keys=False), encoding="utf-8"
    )
    return {
        "best_method": winner.params["method"],
        "best_value": winner.value,
        "best_trial": winner.number,
        "best_yaml": str(tuner.out / "best.yaml"),
        "report": str(report),
    }


def report_text(study: Any, best: dict[str, Any]) -> str:
    import optuna

    lines = [
        f"# smartft tune: {study.study_name}",
        "",
        "Every value is the held-out score (a part of the training set) at the end of the "
        "trial's budget; dev was not read.",
        "",
        "## Best per method",
        "",
        "| method | trial | held-out | settings |",
        "|---|---|---|---|",
    ]
    for method, trial in sorted(best.items(), key=lambda kv: -kv[1].value):
        settings = json.loads(trial.user_attrs.get("settings", "{}"))
        text = ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items()
        )
        lines.append(f"| {method} | {trial.number} | {trial.value:.4f} | {text} |")
    lines += [
        "",
        "## Every trial",
        "",
        "| trial | state | method | held-out | last held-out report | worker |",
        "|---|---|---|---|---|---|",
    ]
    for trial in study.get_trials(deepcopy=False):
        value = "" if trial.value is None else f"{trial.value:.4f}"
        steps = trial.intermediate_values
        last = f"update {max(steps)}: {steps[max(steps)]:.4f}" if steps else ""
        method = trial.params.get("method", "")
        worker = trial.user_attrs.get("worker", "")
        state = trial.state.name
        if "error" in trial.user_attrs:
            state += ": " + trial.user_attrs["error"].replace("|", "/").replace("\n", " ")
        lines.append(f"| {trial.number} | {state} | {method} | {value} | {last} | {worker} |")
    lines += ["", "## Importance of each setting", ""]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            importance = optuna.importance.get_param_importances(study)
        lines += [f"- {name}: {value:.3f}" for name, value in importance.items()]
        lines += [f"\nOptuna's caveat: {w.message}" for w in caught[:1]]
    except (RuntimeError, ValueError) as err:  # too few trials, or settings not shared
        lines.append(f"Not computed: {err}")
    return "\n".join(lines) + "\n"


def plot_history(study: Any, path: Path) -> None:
    """Held-out score per trial, and the best so far (skipped without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    if not done:
        return
    figure, axis = plt.subplots(figsize=(6, 3.5))
    numbers, values = [t.number for t in done], [t.value for t in done]
    axis.scatter(numbers, values, s=14, label="trial")
    best = [max(values[: i + 1]) for i in range(len(values))]
    axis.step(numbers, best, where="post", color="black", label="best so far")
    axis.set_xlabel("trial")
    axis.set_ylabel("held-out score")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_final(study: Any, tuner: Tuner, seeds: list[int], say: Any) -> Path:
    """The winner and plain at their chosen settings on the full training set, one run per
    seed, dev read once at the end of each; the paired report in final.md. Finished runs are
    kept, so running it again resumes."""
    from smartft.launch import train

    best = best_trials(study)
    if "plain" not in best:
        raise SmartftError("--final_seeds: no plain trial has completed, nothing to compare with")
    winner = max(best.values(), key=lambda t: t.value)
    variants = {"plain": best["plain"], winner.params["method"]: winner}
    folder = tuner.out / "final"
    for seed in seeds:
        for variant, trial in variants.items():
            run_dir = folder / variant / f"seed{seed}"
            if (run_dir / "all_results.json").is_file():
                continue
            options = trial_options(tuner, trial)
            options.update(seed=seed, output_dir=str(run_dir), overwrite_output_dir=True)
            options.update(eval_strategy="no", load_best_model_at_end=False, save_model=False)
            say(f"tune: final run {variant} seed {seed} (trial {trial.number}'s settings)")
            train(resolve(options, yaml_name="tune final run"))
            axes = {"task": options.get("task_name", "custom"), "variant": variant, "seed": seed}
            (run_dir / SWEEP_FILE).write_text(yaml.safe_dump(axes), encoding="utf-8")
    text = (
        "# smartft tune: the final seeds\n\nThe winner and plain at the settings the held-out "
        "part chose, trained on the full training set, dev read once at the end of each run.\n\n"
        + markdown(summarize(collect(folder)))
    )
    (tuner.out / "final.md").write_text(text, encoding="utf-8")
    return tuner.out / "final.md"
