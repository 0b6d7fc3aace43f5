"""The ``mmlrepro`` command: datasets, train, reproduce, report, notebooks, check.

Run ``mmlrepro COMMAND --help`` for each command's options.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

DEFAULT_GROUPS = ("table3", "table2", "figure3", "ccl_matched", "honest", "li2023", "linear")


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_params(items: list[str], option: str = "--param") -> dict[str, Any]:
    """``name=value`` pairs; values are JSON (``margins=[0.7,0.8]``) or plain strings."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{option}: expected NAME=VALUE, got {item!r}")
        out[name.strip()] = _json_value(value)
    return out


def cmd_datasets(args: argparse.Namespace) -> int:
    from mmlrepro.data import load_dataset
    from mmlrepro.notebooks import table1

    datasets = {name: load_dataset(name, data_dir=args.data_dir) for name in args.names}
    print(table1(datasets).to_string())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import torch

    from mmlrepro.check import device_checks

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = device_checks(device)
    for row in rows:
        print(f"{'ok  ' if row['ok'] else 'FAIL'}  {row['check']}: {row['gap']}")
    failed = sum(not row["ok"] for row in rows)
    print(f"{len(rows) - failed} of {len(rows)} checks passed on {device}")
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from mmlrepro.catalogue import DATASETS, paper_config
    from mmlrepro.config import RunConfig
    from mmlrepro.metrics import METRIC_NAMES
    from mmlrepro.runner import run

    overrides = {k: v for k, v in {
        "n_negatives": args.negatives, "batch_size": args.batch_size, "lr": args.lr,
        "epochs": args.epochs, "seed": args.seed, "selection": args.selection,
        "user_subsample": args.user_subsample, "device": args.device,
        "lr_reduce": args.lr_reduce or None, "exclude_positives": args.exclude_positives or None}.items()
        if v is not None}
    params = _parse_params(args.param) if args.param else {}
    if args.dataset in DATASETS:
        config = paper_config(args.dataset, args.model, args.loss, profile=args.profile or "paper",
                              params=params, **overrides)
    else:
        if args.profile is not None:
            raise ValueError(f"--profile applies to {' and '.join(DATASETS)} only, not to {args.dataset!r}")
        config = RunConfig(dataset=args.dataset, model=args.model, loss=args.loss,
                           loss_params=params, **overrides)
    result = run(config, results_dir=args.results_dir, data_dir=args.data_dir, force=args.force)
    source = "from the store" if result.from_store else f"trained on {result.device}"
    print(f"{config.label()} ({source}), key {result.key}")
    print(f"best epoch {result.best['epoch']}: " + ", ".join(
        f"{m} {result.best[m]:.4f}" for m in METRIC_NAMES))
    if result.test:
        print("test (honest, once): " + ", ".join(f"{m} {v:.4f}" for m, v in result.test.items()))
    print(f"{len(result.history)} epochs: {result.timings['train_s']:.1f} s training + "
          f"{result.timings['eval_s']:.1f} s evaluation on {result.device}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from mmlrepro.migrate import migrate_store

    report = migrate_store(args.results_dir, dry_run=args.dry_run)
    for line in report.lines():
        print(("(dry run) " if args.dry_run else "") + line)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from mmlrepro.migrate import merge_stores

    for line in merge_stores(args.other, args.results_dir).lines():
        print(line)
    return 0


def default_profile() -> tuple[str | None, str]:
    """``paper`` with a CUDA GPU; None without one (``reproduce`` then trains nothing unless a
    profile is given), and why."""
    import torch

    if torch.cuda.is_available():
        return "paper", f"a CUDA GPU is present ({torch.cuda.get_device_name(0)})"
    return None, "no CUDA GPU: a paper-profile run takes 1-2 hours on a CPU"


# reproduce's options that only apply when it trains
_TRAINING_OPTIONS = ("device", "max_minutes", "refresh_per_user", "jobs", "devices", "threads_per_job",
                     "address", "cpus_per_run", "gpus_per_run", "no_compare", "data_dir")


def store_overview(groups: list[str], n_seeds: int, results_dir: str | None = None,
                   datasets: list[str] | None = None) -> list[str]:
    """What ``reproduce`` prints without a GPU and without a profile, training nothing (issue 36):
    the paper-profile results the store holds (the report's "at a glance"), the orderings of the
    paper its runs keep and those the quick profile keeps, what ``--profile paper`` would train
    for ``groups`` and how long that would take by the stored timings, and how to start."""
    from mmlrepro.agreement import PAPER_EPOCHS, agreement, quick_share
    from mmlrepro.catalogue import DATASETS, QUICK
    from mmlrepro.glance import at_a_glance
    from mmlrepro.linear import linear_grid
    from mmlrepro.results import ResultsStore
    from mmlrepro.runner import missing_runs
    from mmlrepro.runtimes import estimate_minutes

    datasets = list(datasets or DATASETS)
    store = ResultsStore(results_dir, log=None)
    lines = [f"What the store ({store.root}) holds at the paper profile (SPEC §8: full data, 100 epochs):", ""]
    lines += [line.rstrip() for line in at_a_glance(results_dir).markdown().split("\n") if line.strip()]
    paper = agreement("paper", [PAPER_EPOCHS], results_dir)
    kept = int(paper["agrees"].sum())
    seeds = sorted({r["config"]["seed"] for r in store.records() if r["config"]["profile"] == "paper"})
    runs = (f"one run (seed {seeds[0]})" if len(seeds) == 1
            else f"the mean of its stored runs (the store holds seeds {', '.join(map(str, seeds))})")
    quick_kept, quick_of = quick_share(results_dir)
    of_those = f"those {kept}" if quick_of == kept else f"the {quick_of} of them it has runs for"
    lines += ["", f"Of the paper's orderings with paper-profile runs (Table 3's pairwise orders, Table 2's MML vs "
              f"CCL, Figure 3's signs), the stored runs keep {kept} of {len(paper)}. Each number is {runs} of the "
              "paper's protocol, selected on the test split as the paper's were: it says whether the paper's "
              "numbers and orders come out of that protocol; it cannot say "
              + ("how much another seed moves them" if len(seeds) == 1 else "more than its seeds' spread shows")
              + ", nor what selecting on validation or other code and hardware would give. "
              "Full tables, claims and tests: REPRODUCTION.md (`mmlrepro report`).",
              "", "Check the stored runs on this machine in minutes: `mmlrepro verify` trains the first epoch of "
              "the cheapest stored run of Table 3, Table 2 and Figure 3 again and compares it with the stored one.",
              "", f"The quick profile ({QUICK['user_subsample']:,} users, {QUICK['epochs']} epochs, lr "
              f"{QUICK['lr']:g}) trains in minutes but keeps only {quick_kept} of {of_those} orderings "
              f"(docs/cpu_profiles.md), so its numbers say little about the paper's; it runs only when asked: "
              '`make reproduce ARGS="--profile quick"`.', ""]
    trained = [g for g in groups if g != "linear"]
    todo = missing_runs(trained, "paper", n_seeds, results_dir, datasets) if trained else []
    minutes = estimate_minutes(todo, store.records())
    known = [m for m in minutes if m is not None]
    lines.append(f"`--profile paper` would train {len(todo)} runs the store lacks for {', '.join(trained) or 'no group'} "
                 f"({n_seeds} seed{'s' if n_seeds > 1 else ''}): about {sum(known) / 60:.0f} hours by the stored "
                 f"timings of the paper runs (on the CPUs and thread counts their records name)"
                 + (f", plus {len(minutes) - len(known)} runs of unknown cost" if len(known) < len(minutes) else "")
                 + (":" if todo else "."))
    for group in dict.fromkeys(c.group for c in todo):
        part = [(c, m) for c, m in zip(todo, minutes, strict=True) if c.group == group]
        hours = sum(m for _, m in part if m is not None) / 60
        lines.append(f"- {group}: {len(part)} runs, about {hours:.1f} h")
    if "linear" in groups:
        done = {p.stem for p in (store.root / "linear").glob("*.json")}
        fits = [c for c in linear_grid("paper", tuple(datasets)) if c.key() not in done]
        lines.append(f"- linear (EASE / iALS): {len(fits)} fits the store lacks")
    lines += ["", "Nothing was trained. To train the paper profile here: `make reproduce ARGS=\"--profile paper\"` "
              "(on a lent GPU: DEVELOPERS.md)."]
    return lines


def cmd_reproduce(args: argparse.Namespace) -> int:
    from mmlrepro.comparison import QUICK_LABEL, claims_display, compare
    from mmlrepro.jobs import Workers
    from mmlrepro.runner import run_missing

    profile = args.profile
    groups = args.groups or list(DEFAULT_GROUPS)
    if profile is None:
        profile, why = default_profile()
        if profile is None:
            given = [name for name in _TRAINING_OPTIONS if getattr(args, name) not in (None, False)]
            given += ["executor"] if args.executor != "local" else []
            if given:
                raise ValueError(f"--{given[0].replace('_', '-')} applies to training, and without a GPU "
                                 "reproduce trains only with --profile paper or --profile quick")
            print(f"{why[:1].upper()}{why[1:]}, so nothing is trained without --profile.\n")
            for line in store_overview(groups, args.seeds, args.results_dir, args.datasets):
                print(line)
            return 0
        print(f"profile: {profile} ({why}); choose with --profile paper|quick")
    if profile == "quick":
        from mmlrepro.agreement import quick_share

        kept, of = quick_share(args.results_dir)
        if of:
            print(f"note: the stored quick-profile runs keep {kept} of the {of} orderings of the paper that the "
                  "stored paper-profile runs keep (docs/cpu_profiles.md); its numbers say little about the paper's")
    workers = Workers(jobs=args.jobs, executor=args.executor,
                      devices=tuple(args.devices) if args.devices else None,
                      threads_per_job=args.threads_per_job, address=args.address,
                      cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run)
    run_missing(groups, profile, args.seeds, results_dir=args.results_dir, datasets=args.datasets,
                device=args.device, data_dir=args.data_dir, max_minutes=args.max_minutes,
                refresh_per_user=args.refresh_per_user, workers=workers,
                log=lambda line: print(line, flush=True))
    if profile != "paper" and not args.no_compare:
        print(f"\n{profile} profile: {QUICK_LABEL}; its tables are not set beside the paper's numbers")
    for group in [] if args.no_compare else [g for g in groups if g != "linear"]:
        tables = compare(group, profile, args.results_dir)
        print(f"\n== {group} [{profile}] ==")
        print(tables["table"].to_string(index=False))
        if not tables["claims"].empty:
            print(claims_display(tables["claims"]).to_string(index=False))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from mmlrepro.verify import summary, verify

    results = verify(args.keys, all_runs=args.all, groups=args.group or (), epochs=args.epochs,
                     results_dir=args.results_dir, data_dir=args.data_dir, device=args.device)
    print(summary(results))
    return 1 if any(r.outcome == "differs" for r in results) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from mmlrepro.report import write_report

    path = write_report(args.output, results_dir=args.results_dir, figures_dir=args.figures_dir,
                        readme=args.readme)
    print(f"wrote {path}, {path.with_name(f'{path.stem}_APPENDIX{path.suffix}')} and the at-a-glance block "
          "of the README (where it has the markers)")
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    from mmlrepro.notebooks import run_notebooks

    parameters = _parse_params(args.param, "-p/--param") if args.param else {}
    if args.seeds is not None:
        parameters["seeds"] = args.seeds
    if args.no_train:
        parameters["run_missing_runs"] = False
    paths = run_notebooks(profile=args.profile, output_dir=args.output_dir, smoke=args.smoke,
                          parameters=parameters)
    for p in paths:
        print(f"executed {p}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlrepro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="print MML Table 1 beside the paper's numbers")
    p.add_argument("names", nargs="*", default=["yelp2018", "gowalla"])
    p.add_argument("--data-dir", help="folder holding <name>/train.txt (default: $MMLREPRO_DATA_DIR, cache, download)")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("train", help="train one run (any loss, model, dataset, N) and store it")
    p.add_argument("--dataset", required=True, help="gowalla, yelp2018, a folder with train.txt/test.txt, or synthetic")
    p.add_argument("--model", default="mf", choices=["mf", "simplex"])
    p.add_argument("--loss", default="mml", help="a loss name of mmlrepro.losses (mml, ccl, bsl, ...)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="override one loss hyperparameter (JSON value, e.g. margins=[0.7,0.9]) on top of "
                        "the SPEC §8 values of the dataset, model and loss")
    p.add_argument("--negatives", type=int,
                   help="negatives per row, drawn with replacement (may exceed the item count); at most "
                        "100,000, and one step's negatives must fit in half the device's memory")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--selection", choices=["paper", "early_stop", "honest"])
    p.add_argument("--user-subsample", type=int)
    p.add_argument("--lr-reduce", action="store_true",
                   help="the original SimpleX schedule: lr x0.1 and the best weights reloaded on each "
                        "non-improving epoch (SPEC §6)")
    p.add_argument("--exclude-positives", action="store_true",
                   help="redraw negatives that are one of the user's train items (SPEC §4; off in the paper)")
    p.add_argument("--profile", default=None, choices=["paper", "quick"],
                   help="settings base for gowalla/yelp2018 (default: paper)")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--force", action="store_true",
                   help="train even if the store holds the run (the stored record is set aside, not lost)")
    p.add_argument("--results-dir", default=None, help="results store (default: results/)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("reproduce", help="run what the store lacks for GROUPs, then print the comparisons (without a "
                                         "GPU and --profile: show the store and the plan, train nothing)")
    p.add_argument("groups", nargs="*", metavar="GROUP", help=f"default: {' '.join(DEFAULT_GROUPS)}")
    p.add_argument("--profile", choices=["paper", "quick", "smoke"], default=None,
                   help="paper (SPEC §8) or quick (CPU minutes); default: paper with a GPU; without one, "
                        "show what the store holds and what the paper profile would train, and train nothing")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (2019, 2020, ...)")
    p.add_argument("--datasets", nargs="+", default=["yelp2018", "gowalla"])
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="start no run that would end past this budget (the rest stays for later)")
    p.add_argument("--refresh-per-user", action="store_true",
                   help="train again the stored runs that have no per-user values (the old record "
                        "is set aside), so their comparisons get significance tests")
    p.add_argument("--jobs", type=int, default=None, metavar="K",
                   help="train K runs at a time in worker processes (default 1: one after the other, "
                        "in this process); with --executor ray, at most K Ray tasks at a time")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or Ray tasks on a cluster (pip install 'mmlrepro[ray]')")
    p.add_argument("--devices", nargs="+", metavar="DEVICE",
                   help="with --jobs K: spread the runs over these devices (default: every visible GPU, "
                        "else the CPU), several runs a device when K is larger")
    p.add_argument("--threads-per-job", type=int, default=None,
                   help="with --jobs K: torch threads of each worker (default: cores // K)")
    p.add_argument("--address", default=None,
                   help="with --executor ray: auto, ray://host:10001 (default: a local Ray started here)")
    p.add_argument("--cpus-per-run", type=float, default=None, help="with --executor ray: CPUs a run asks for (default 1)")
    p.add_argument("--gpus-per-run", type=float, default=None,
                   help="with --executor ray: GPUs a run asks for, fractional allowed (0.25: four runs "
                        "a GPU; default 0, the CPU)")
    p.add_argument("--no-compare", action="store_true", help="skip the comparison tables at the end")
    p.add_argument("--results-dir", default=None, help="results store (default: results/)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("verify", help="train the first epochs of stored runs again and compare them with "
                                      "their stored histories")
    p.add_argument("keys", nargs="*", metavar="KEY",
                   help="run keys (or unique prefixes) of results/runs/ (default: the cheapest stored "
                        "paper-profile run of each of Table 3, Table 2 and Figure 3)")
    p.add_argument("--all", action="store_true",
                   help="every trained paper-profile run (of --group, if given); runs read off an "
                        "ES = N twin are covered by the twin")
    p.add_argument("--group", action="append", metavar="GROUP",
                   help="only runs of this catalogue group (table2, table3, figure3, ...; repeatable): "
                        "its cheapest run, or all of them with --all")
    p.add_argument("--epochs", type=int, default=1, help="epochs to train again and compare (default 1)")
    p.add_argument("--device", default=None, help="auto (default: the stored config's), cpu, cuda")
    p.add_argument("--results-dir", default=None, help="results store (default: results/)")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("migrate", help="bring the results store to the current schema (re-keys, loses no run)")
    p.add_argument("--results-dir", default=None, help="results store (default: results/)")
    p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("merge", help="bring another store's records in (a GPU archive, a cluster's, a "
                                     "collaborator's): duplicates resolved, nothing dropped")
    p.add_argument("other", metavar="OTHER_STORE", help="the store to bring in (left unchanged)")
    p.add_argument("--results-dir", default=None, help="the store merged into (default: results/)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("report", help="write the comparison tables as markdown (REPRODUCTION.md)")
    p.add_argument("--output", default="REPRODUCTION.md")
    p.add_argument("--results-dir", default=None, help="results store (default: results/)")
    p.add_argument("--figures-dir", default="figures")
    p.add_argument("--readme", default=None,
                   help="README whose at-a-glance block (between its markers) is rewritten "
                        "(default: README.md beside --output)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("notebooks", help="execute the notebooks headless with papermill")
    p.add_argument("--profile", choices=["paper", "quick"], default="quick")
    p.add_argument("--output-dir", default=None, help="where executed notebooks go (default: in place)")
    p.add_argument("--smoke", action="store_true", help="tiny data, an epoch or two (CI)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per run (notebook default: 3)")
    p.add_argument("--no-train", action="store_true",
                   help="show what the store holds and list missing runs instead of training them")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="any other notebook parameter (JSON value), as papermill -p")
    p.set_defaults(func=cmd_notebooks)

    p = sub.add_parser("check", help="the fast step and the evaluation against their textbook forms, on a device")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=cmd_check)
    return parser


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


@contextmanager
def _sigterm_stops_like_ctrl_c(seen: threading.Event) -> Iterator[None]:
    """While a command runs, SIGTERM (``kill``, ``timeout``, a batch scheduler's pre-emption)
    stops it as Ctrl-C does, and sets ``seen``: the current run's checkpoint is kept, its lease
    is released at once (not left to go stale) and the last line says what was kept. The
    previous handler comes back afterwards; outside the main thread (where Python cannot set
    handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        seen.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run one command; the package's errors become one line on stderr and exit status 2
    (130 for Ctrl-C, 143 for SIGTERM; 1 when runs of a ``reproduce`` failed and the others were
    stored), with the traceback only under ``--debug``.

    Errors: ``ValueError`` (bad parameters, ``DataError``, ``StoreError``, ``OutputError``,
    ``DeviceError``), ``OSError`` (named by its path), ``NonFiniteLossError``, and running out of
    memory. Ctrl-C or SIGTERM (``RunInterrupted`` or a bare ``KeyboardInterrupt``) says what was
    kept."""
    import torch

    from mmlrepro.files import describe_error
    from mmlrepro.jobs import RunsFailed
    from mmlrepro.train import NonFiniteLossError, RunInterrupted

    args = build_parser().parse_args(argv)
    sigterm = threading.Event()
    try:
        with _sigterm_stops_like_ctrl_c(sigterm):
            return args.func(args)
    except (ValueError, OSError, NonFiniteLossError) as err:
        if args.debug:
            raise
        return _fail(describe_error(err))
    except RunsFailed as err:
        if args.debug:
            raise
        _fail(describe_error(err))
        return 1
    except (MemoryError, torch.cuda.OutOfMemoryError) as err:
        if args.debug:
            raise
        return _fail(f"out of memory ({describe_error(err)}); try fewer negatives, a smaller batch "
                     "or another device")
    except (RunInterrupted, KeyboardInterrupt) as err:
        if args.debug:
            raise
        by = "SIGTERM" if sigterm.is_set() else "Ctrl-C"
        what = " ".join(str(err).split()) or (f"stopped by {by}; every run that finished before it is "
                                              "stored, and no file was left half-written")
        print(f"interrupted: {what}", file=sys.stderr)
        return 143 if sigterm.is_set() else 130


if __name__ == "__main__":
    raise SystemExit(main())
