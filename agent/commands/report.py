"""`lifelean report [--open]`: write reports/index.html and the PNG plots of the run."""
from __future__ import annotations

import webbrowser

import click

from agent.commands._common import emit, json_option, workspace_from


def _open(path) -> None:
    """Show the page in a browser if there is one; a headless machine is not an error."""
    try:
        webbrowser.open(path.resolve().as_uri())
    except (webbrowser.Error, OSError):
        pass


@click.command("report")
@click.option("--open", "open_", is_flag=True, help="Open the report in a web browser afterwards.")
@json_option
@click.pass_context
def report(ctx: click.Context, open_: bool, as_json: bool) -> None:
    """Write an HTML report (reports/index.html, self-contained) with plots of the run.

    \b
    The page: the run's settings and versions; the lifelong metrics (the numbers of `status --json`)
    with bootstrap intervals; the retriever beside BM25 and the untrained encoder; the accuracy
    matrices with the held-out items under each column; scores per repository over steps; training
    loss and time per phase; theorems proved per step; difficulty as `curriculum` counts it; every
    proof found, with how it was checked.
    Safe to run while `run` is working (it only reads the workspace and writes reports/).

    \b
    Example:
      lifelean -w ~/lifelean-demo report --open
      lifelean -w ~/lifelean-demo report --json | jq -r .report
    """
    from agent.report.html import write_report

    rep = write_report(workspace_from(ctx))
    emit(rep.to_json(), as_json,
         lambda d: click.echo(f"report written to {d['report']} ({len(d['plots'])} plots beside it)"))
    if open_:
        _open(rep.path)
