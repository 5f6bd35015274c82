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
@click.version_option(package_name="lifelean")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None) -> None:
    """lifelean: a prover for Lean 4 that keeps learning from a stream of repositories.

    \b
    Typical session:
      lifelean add ../shared/data/leandojo_b4_sample --split-by-dir 2
      lifelean curriculum
      lifelean run            # index, learn, prove, remember, evaluate; Ctrl-C is safe
      lifelean resume         # continue where it stopped
      lifelean report --open
    """
    ctx.ensure_object(dict)
    ctx.obj["workspace"] = workspace


def main(argv: list[str] | None = None) -> None:
    """Console entry point (user errors and Ctrl-C are handled in :meth:`LazyGroup.invoke`)."""
    cli.main(args=argv, prog_name="lifelean")


if __name__ == "__main__":
    main()
