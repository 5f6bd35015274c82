"""The `lifelean` command line.

Subcommands live one per module in `agent/commands/` and are imported only when used (vLLM's
pattern), so `lifelean --help` stays fast and heavy libraries load only for the command that needs
them. User mistakes (:class:`common.errors.LifeleanError`) print one line on stderr and exit 2.
"""
from __future__ import annotations

import importlib

import click

from common.errors import LifeleanError

# name -> (module, attribute, one-line help shown by `lifelean --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "add": ("agent.commands.add", "add", "Import a traced dataset, a local Lean repo or a git URL into the workspace."),
    "curriculum": ("agent.commands.curriculum", "curriculum", "Show the easy-to-hard order of the repositories."),
    "status": ("agent.commands.status", "status", "Show sources, counts, order, step progress and metrics."),
    "memory": ("agent.commands.memory", "memory", "Inspect and edit the premise store and the memory bank."),
    "prove": ("agent.commands.prove", "prove", "Search for proofs of theorems with the current prover."),
    "evaluate": ("agent.commands.evaluate", "evaluate", "Score the retriever on any dataset, next to BM25."),
    "metrics": ("agent.commands.metrics", "metrics", "Lifelong-learning metrics of an accuracy matrix or a run."),
    "run": ("agent.commands.run", "run", "Run the lifelong loop over a stream of repositories."),
    "resume": ("agent.commands.run", "resume", "Continue an interrupted run at its first unfinished step."),
    "report": ("agent.commands.report", "report", "Write an HTML report with plots of the run."),
}


def did_you_mean(word: str, choices, n: int = 3) -> list[str]:
    """The closest of `choices` to a mistyped `word` (difflib ratio >= 0.6), plus those it is a prefix of."""
    import difflib

    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=n, cutoff=0.6)
    prefixed = [c for c in choices if word and c.lower().startswith(word.lower()) and c not in close]
    return (close + prefixed)[:n]


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # this command is not built in this version
                return None
            raise

    def resolve_command(self, ctx: click.Context, args: list[str]):
        """An unknown command is a usage error that suggests the nearest ones ("did you mean")."""
        name = click.utils.make_str(args[0]) if args else ""
        if args and name not in COMMANDS and not name.startswith("-"):
            close = did_you_mean(name, COMMANDS)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint} (see `lifelean --help`)")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context):
        """Run the subcommand; a user error becomes one line on stderr and exit status 2."""
        try:
            return super().invoke(ctx)
        except LifeleanError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, _, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-w", "--workspace", type=click.Path(file_okay=False), default=None, envvar="LIFELEAN_WORKSPACE",
              help="Workspace directory [default: workspaces/default, or $LIFELEAN_WORKSPACE].")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summaries: only results and errors.")
@click.option("-v", "--verbose", is_flag=True, help="More detail: per-phase timings and training statistics.")
@click.version_option(package_name="lifelean")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, quiet: bool, verbose: bool) -> None:
    """lifelean: a prover for Lean 4 that keeps learning from a stream of repositories.

    \b
    Typical session:
      lifelean add ../shared/data/leandojo_b4_sample --split-by-dir 2
      lifelean curriculum
      lifelean run            # index, learn, prove, remember, evaluate; Ctrl-C is safe
      lifelean resume         # continue where it stopped
      lifelean report --open

    Long commands (add, run, resume, prove, evaluate) show progress bars on a
    terminal and plain timestamped lines when stderr is a file (nohup, SLURM);
    commands that write keep a log in WORKSPACE/logs/.

    \b
    Shell completion (bash; zsh and fish likewise, see the README):
      eval "$(_LIFELEAN_COMPLETE=bash_source lifelean)"
    """
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace
    ctx.obj["verbosity"] = 0 if quiet else 2 if verbose else 1


def main(argv: list[str] | None = None) -> None:
    """Console entry point (user errors and Ctrl-C are handled in :meth:`LazyGroup.invoke`)."""
    cli.main(args=argv, prog_name="lifelean")


if __name__ == "__main__":
    main()
