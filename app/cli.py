"""``beatedit``: the command line.

    beatedit run STAGE [--set key=value ...]     one stage's Prefect flow (or `pipeline`), with overrides
    beatedit edit IN --duration 30 -o OUT.wav    edit a song to 30 s with the champion policy (--target 0.6: a share;
                                                 --exact: stretch to the sample; --editor search|heuristic|fade|random)
    beatedit evaluate --model URI --audio-dir D  score a model on any folder with the simulated listener
    beatedit promote [--rollback]                promote the evaluated challenger, or restore the previous champion
    beatedit feedback serve|export               the A/B listening page and its export to preferences

The domain stays framework-free: this module imports flows/tasks (Prefect, MLflow)
only inside the commands that need them.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from pathlib import Path

from beatedit.editing.editors import EDITORS

STAGES = ("corpus", "stems", "features", "preferences", "reward", "rlhf", "evaluate", "promote", "pipeline")
DEFAULT_MODEL = "models:/beatedit-policy@champion"
DEFAULT_REWARD_MODEL = "models:/beatedit-reward@champion"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("beatedit")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown (not installed)"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not when its help already states it, nor for a required option,
    a flag that is off, or an option without a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or action.required or default is None or default is argparse.SUPPRESS
                or default is False or default == [] or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """``HelpFormatter`` on ``parser`` and every subcommand below it (feedback's included)."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_help_formatter(sub)


def params_file(args: argparse.Namespace) -> str:
    """``--params`` (before or after the subcommand), else params.yaml in the current folder."""
    return args.params or "params.yaml"


def edit_config(params: str | None):
    """``edit``'s configuration: ``--params``, else ./params.yaml when there is one, else the packaged defaults.

    The defaults are the dataclass defaults of ``beatedit/config.py`` (the documented ones),
    so ``beatedit edit`` works from any folder, not only a checkout.
    """
    from beatedit.config import Config, load_config

    if params is None and not Path("params.yaml").is_file():
        return Config()
    return load_config(params or "params.yaml")


def cmd_run(args: argparse.Namespace) -> int:
    args.params = params_file(args)
    if args.stage == "pipeline":
        if args.overrides:
            print("error: the pipeline reads params.yaml (DVC tracks it); use `dvc exp run -S key=value` for overrides", file=sys.stderr)
            return 2
        module = importlib.import_module("flows.pipeline")
        module.pipeline(params=args.params)
        return 0
    module = importlib.import_module(f"flows.{args.stage}")
    from flows.common import stage_main

    argv = ["--params", args.params] + [x for o in args.overrides for x in ("--set", o)]
    stage_main(getattr(module, args.stage), argv)
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    from beatedit.config import ConfigError
    from beatedit.editing.target import format_seconds, parse_duration
    from app.edit import EditFileError, check_inputs, edit_file
    from app.outputs import check_outputs, expected_phases, write_outputs
    from beatedit.progress import showing_progress

    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)

    try:
        cfg = edit_config(args.params)
        duration = parse_duration(args.duration) if args.duration is not None else None
        target = args.target if args.target is not None or duration is not None else 0.6
        check_inputs(Path(args.input), Path(args.output), cfg, strict=args.strict, warn=lambda m: None)  # before loading a model
        check_outputs(Path(args.input), Path(args.output), cfg, stems=args.stems, picture=args.picture)
        keep = parse_keeps(args.keep, args.editor)  # before any model or analysis
        reward_model = sampling_reward_model(args, cfg)  # --best-of / --variations / --keep: checked and loaded before the policy
        policy = None
        if args.editor == "policy":
            from tasks.policy_source import PolicySourceError, load_policy_from_uri

            try:
                policy = load_policy_from_uri(args.model, cfg)
            except PolicySourceError as exc:
                raise EditFileError(str(exc)) from None
        if args.variations is not None:
            if keep:
                raise EditFileError("--keep with --variations is not supported yet: use --keep with one edit (--best-of N)")
            return print_variations(args, cfg, policy, reward_model, duration, target, warn)
        with showing_progress(expected_phases(args.stems, args.picture)):
            result = edit_file(Path(args.input), None if duration is not None else target, Path(args.output), cfg,
                               editor=args.editor, policy=policy, seed=args.seed, duration=duration, exact=args.exact,
                               strict=args.strict, warn=warn, best_of=args.best_of, reward_model=reward_model, keep=keep,
                               temperature=args.temperature)
            extras = write_outputs(result, cfg, stems=args.stems, picture=args.picture)
    except (EditFileError, ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # unwritable folder, full disk, a file vanishing under us: a message, not a traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    err = result["duration"] - result["target_seconds"]
    stretch = f", stretched x{result['stretch']:.4f}" if result["stretch"] else ""
    print(f"wrote {result['wav']}: {format_seconds(result['duration'])} ({result['duration']:.3f} s; asked "
          f"{result['target_seconds']:.3f} s, {err:+.3f} s{stretch}) of {format_seconds(result['source_duration'])}, "
          f"and {result['edl']}")
    stems = [v for k, v in extras.items() if k.startswith("stem:")]
    if stems:
        print(f"stems (cut at the same points, same length): {', '.join(stems)}")
    print(f"cues: {extras['cues']}" + (f"; seams picture: {extras['picture']}" if "picture" in extras else ""))
    return 0


def sampling_reward_model(args: argparse.Namespace, cfg):
    """The reward model ranking ``--best-of`` / ``--variations`` samples (None when neither is asked);
    both need ``--editor policy``. Bad counts and a missing model are EditFileErrors naming the flag."""
    from app.edit import EditFileError
    from app.variations import MAX_BEST_OF, MAX_VARIATIONS, check_count

    if args.best_of is None and args.variations is None and not (args.keep and args.editor == "policy"):
        return None
    flag = "--variations" if args.variations is not None else "--best-of" if args.best_of is not None else "--keep"
    if args.editor != "policy" and flag != "--keep":
        raise EditFileError(f"{flag} samples the policy and ranks the samples with the reward model; "
                            f"--editor {args.editor} has nothing to sample")
    if args.best_of is not None:
        check_count("--best-of", args.best_of, MAX_BEST_OF)
    if not (math.isfinite(args.temperature) and 0.01 <= args.temperature <= 10.0):
        raise EditFileError(f"--temperature: must lie in [0.01, 10], got {args.temperature}")
    if args.variations is not None:
        check_count("--variations", args.variations, MAX_VARIATIONS)
    from tasks.policy_source import PolicySourceError, load_reward_from_uri

    try:
        return load_reward_from_uri(args.reward_model, cfg)
    except PolicySourceError as exc:
        raise EditFileError(f"--reward-model: {exc}") from None


def parse_keeps(texts: list[str] | None, editor: str) -> list[tuple[float, float]]:
    """``--keep START-END`` (repeatable) -> [(start, end) seconds]; refused for editors that cannot honour it."""
    from app.edit import EditFileError, check_keep_editor
    from beatedit.editing.keep import parse_keep

    if not texts:
        return []
    try:
        regions = [parse_keep(t) for t in texts]
    except ValueError as exc:
        raise EditFileError(str(exc)) from None
    check_keep_editor(editor, regions)
    return regions


def print_variations(args: argparse.Namespace, cfg, policy, reward_model, duration, target, warn) -> int:
    """``--variations N``: write OUT.1.wav .. OUT.N.wav ranked by the reward model and print each."""
    from app.outputs import write_outputs
    from app.variations import edit_variations
    from beatedit.editing.target import format_seconds

    res = edit_variations(Path(args.input), None if duration is not None else target, Path(args.output), cfg, policy,
                          reward_model, args.variations, best_of=args.best_of, seed=args.seed, duration=duration,
                          exact=args.exact, strict=args.strict, warn=warn, temperature=args.temperature)
    print(f"{len(res['variations'])} variations of {format_seconds(res['source_duration'])} "
          f"(asked {res['target_seconds']:.3f} s; {res['draws']} policy samples ranked by the reward model, best first):")
    for v in res["variations"]:
        extras = write_outputs({"wav": v["wav"], "song": res["song"]}, cfg, stems=args.stems, picture=args.picture)
        print(f"  {v['rank']}. {v['wav']}  score {v['score']:+.4f}  {format_seconds(v['duration'])} ({v['duration']:.3f} s, "
              f"{v['duration'] - res['target_seconds']:+.3f} s)  {v['edl']}  + {', '.join(sorted(extras))}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from app.evaluate_folder import HEADLINE, EvaluateFolderError, evaluate_folder
    from beatedit.config import ConfigError
    from beatedit.editing.target import parse_duration
    from tasks.policy_source import PolicySourceError, load_policy_from_uri

    try:
        cfg = edit_config(getattr(args, "params", None))
        duration = parse_duration(args.duration) if args.duration is not None else None
        target = None if duration is not None else (args.target if args.target is not None else 0.6)
        policy = load_policy_from_uri(args.model, cfg)
        report = evaluate_folder(policy, Path(args.audio_dir), cfg, target=target, duration=duration,
                                 out=Path(args.out) if args.out else None)
    except (EvaluateFolderError, PolicySourceError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for q in report["quarantined"]:
        print(f"quarantined: {q['file']}: {q['reason']}")
    for key in HEADLINE:
        value = report["summary"].get(key)
        if value is not None:
            print(f"{key:40s} {value:.4f}" if isinstance(value, float) else f"{key:40s} {value}")
    if args.out:
        print(f"report: {args.out}")
    return 0


def promote_preflight(params: str, rollback: bool) -> None:
    """What ``promote`` needs, checked before Prefect starts: the parameters file, the evaluation's decision
    (not for ``--rollback``) and an existing MLflow store, which the flow is then pointed at (``MLFLOW_TRACKING_URI``),
    so a promote from another folder never opens a new ``mlflow.db`` there. Raises ``ValueError`` naming what is missing."""
    import os

    from beatedit.config import load_config
    from beatedit.paths import StagePaths
    from tasks import tracking

    cfg = load_config(params)
    decision = StagePaths.from_config(cfg).eval_decision
    if not rollback and not Path(decision).is_file():
        raise ValueError(f"{decision}: no evaluation decision here (evaluate.out_dir of {params}, relative to the current "
                         "folder); run the evaluate stage first (`dvc repro evaluate`) from the project folder")
    try:
        os.environ["MLFLOW_TRACKING_URI"] = tracking.read_tracking_uri(cfg)
    except tracking.TrackingStoreMissing as exc:
        raise ValueError(str(exc)) from None


def cmd_promote(args: argparse.Namespace) -> int:
    from beatedit.config import ConfigError

    params = params_file(args)
    if args.expect_champion is not None and not args.rollback:
        print("error: --expect-champion goes with --rollback", file=sys.stderr)
        return 2
    try:
        promote_preflight(params, args.rollback)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from flows.promote import promote_flow, rollback_flow
    from tasks.registry import PromotionLockError

    try:
        decision = rollback_flow(params=params, expected_champion=args.expect_champion) if args.rollback else promote_flow(params=params)
    except PromotionLockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(("PROMOTED: " if decision["promoted"] else "NOT PROMOTED: ") + decision["reason"])
    return 0


def add_upload_model_options(serve: argparse.ArgumentParser) -> None:
    """``beatedit feedback serve --uploads DIR``: the models that render users' variations on the page."""
    serve.add_argument("--model", default=DEFAULT_MODEL, help="with --uploads: policy model URI or checkpoint .pt that samples the variations")
    serve.add_argument("--reward-model", default=DEFAULT_REWARD_MODEL,
                       help="with --uploads: reward model URI or checkpoint .pt that ranks them")
    serve.set_defaults(make_variation_renderer=variation_renderer_for)


def variation_renderer_for(args: argparse.Namespace):
    """(renderer, id) for the page: the policy and reward model loaded once; the id hashes their weights,
    so a new champion renders new variation sets instead of reusing cached ones."""
    import hashlib

    from app.variations import page_renderer
    from tasks.policy_source import PolicySourceError, load_policy_from_uri, load_reward_from_uri

    cfg = edit_config(getattr(args, "params", None))
    try:
        policy = load_policy_from_uri(args.model, cfg)
    except PolicySourceError as exc:
        raise ValueError(f"--model: {exc}") from None
    try:
        reward = load_reward_from_uri(args.reward_model, cfg)
    except PolicySourceError as exc:
        raise ValueError(f"--reward-model: {exc}") from None
    h = hashlib.sha256()
    for module in (policy, reward):
        for t in module.state_dict().values():
            h.update(t.detach().cpu().numpy().tobytes())
    return page_renderer(cfg, policy, reward, model_name=args.model), h.hexdigest()[:16]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="beatedit", description="RLHF for automatic music editing.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--params", default=None,
                        help="parameters file, also accepted after the subcommand (default: ./params.yaml; where there is "
                             "none, `edit` and `evaluate` use the packaged defaults, identical to the repo's params.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add = sub.add_parser

    def add_parser(name: str, **kw):  # every subcommand shows its defaults in --help
        return _add(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kw)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    def params_after(p: argparse.ArgumentParser) -> None:  # `beatedit edit --params p.yaml ...` works too
        p.add_argument("--params", default=argparse.SUPPRESS,
                       help="parameters file, same as before the subcommand (default: ./params.yaml"
                            + (", else the packaged defaults)" if p.prog.split()[-1] in ("edit", "evaluate") else ")"))

    run = sub.add_parser("run", help="run one stage's flow (or the whole pipeline) outside DVC, with overrides")
    run.add_argument("stage", choices=STAGES, metavar="STAGE",
                     help="one of: " + ", ".join(STAGES) + " (the DVC stages in order, promote, or the whole pipeline)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a parameter (repeatable)")
    params_after(run)
    run.set_defaults(func=cmd_run)

    edit = sub.add_parser("edit", help="edit an audio file to a target length")
    edit.add_argument("input", help="audio file (wav/flac/ogg/mp3)")
    length = edit.add_mutually_exclusive_group()
    length.add_argument("--duration", help="output length: seconds (30, 90s), minutes (2m, 1m05s) or m:ss (1:05)")
    length.add_argument("--target", type=float, default=None,
                        help="output length as a share of the input, in (0, 1] (default: 0.6 when --duration is not given)")
    edit.add_argument("--exact", action="store_true",
                      help="time-stretch the edit (by at most 4%%, pitch kept) so the WAV is the target length to the sample")
    edit.add_argument("-o", "--output", required=True, help="output WAV; the EDL is written beside it as .edl.json")
    edit.add_argument("--model", default=DEFAULT_MODEL, help="policy model URI or a policy checkpoint .pt (default: %(default)s)")
    edit.add_argument("--editor", choices=("policy", *EDITORS), default="policy", help="baseline editors need no model")
    edit.add_argument("--seed", type=int, default=0, help="seed for the random editor and the policy samples")
    edit.add_argument("--stems", action="store_true",
                      help="also write each stem (drums, bass, other; separator: stems.backend) cut at the same points as the "
                           "mix, beside it as OUT.drums.wav, ...")
    edit.add_argument("--picture", action=argparse.BooleanOptionalAction, default=True,
                      help="write OUT.seams.png beside the EDL: source and edit waveforms, kept regions shaded, seams marked "
                           "(OUT.cues.json, the beats, bars, sections and seams in output time, is always written)")
    edit.add_argument("--best-of", type=int, default=None, metavar="N",
                      help="sample N edits from the policy and keep the one the reward model scores highest "
                           "(default: the policy's greedy edit)")
    edit.add_argument("--variations", type=int, default=None, metavar="N",
                      help="write the N best distinct policy samples as OUT.1.wav .. OUT.N.wav (+ EDLs), ranked by the reward model")
    edit.add_argument("--reward-model", default=DEFAULT_REWARD_MODEL,
                      help="reward model URI or reward checkpoint .pt ranking --best-of / --variations samples")
    edit.add_argument("--temperature", type=float, default=1.0,
                      help="with --best-of / --variations / --keep (policy): sample from p^(1/T); below 1 the samples stay "
                           "closer to the policy's greedy edit (fewer scattered cuts)")
    edit.add_argument("--keep", action="append", default=None, metavar="START-END",
                      help="a region of the source that must stay in the edit, whole and in order, e.g. 1:10-1:40 "
                           "(repeatable; --editor search or policy)")
    edit.add_argument("--strict", action="store_true",
                      help="refuse a damaged input (a WAV truncated mid-data) instead of warning and editing what is there")
    params_after(edit)
    edit.set_defaults(func=cmd_edit)

    ev = sub.add_parser("evaluate", help="score a policy against the baselines on a folder of audio, with the independent "
                                         "judge and the simulated listener")
    ev.add_argument("--model", default=DEFAULT_MODEL, help="policy model URI or a policy checkpoint .pt (default: %(default)s)")
    ev.add_argument("--audio-dir", required=True, help="folder of audio files (wav/flac/ogg/mp3); files that cannot be analysed are listed and skipped")
    ev_len = ev.add_mutually_exclusive_group()
    ev_len.add_argument("--duration", help="edit every song to this length: seconds (30, 90s) or m:ss (1:05)")
    ev_len.add_argument("--target", type=float, default=None, help="edit every song to this share of its length (default 0.6)")
    ev.add_argument("--out", help="write the report (summary, every edit's scores, quarantined files) as JSON here")
    params_after(ev)
    ev.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("promote", help="promote the evaluated challenger if it beats the champion")
    pr.add_argument("--rollback", action="store_true", help="restore the previous champion")
    pr.add_argument("--expect-champion", metavar="VERSION", default=None,
                    help="with --rollback: roll back only if VERSION is still the champion (safe to re-run)")
    params_after(pr)
    pr.set_defaults(func=cmd_promote)

    try:
        from beatedit.feedback.cli import add_feedback_cli
    except ImportError:
        pass
    else:
        add_feedback_cli(sub, serve_hook=add_upload_model_options)
    use_help_formatter(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    from tasks.telemetry import disable_telemetry  # framework-free: only sets environment variables

    disable_telemetry()
    args = build_parser().parse_args(argv)
    raise SystemExit(args.func(args) or 0)


if __name__ == "__main__":
    main()
