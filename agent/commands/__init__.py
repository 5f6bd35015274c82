"""One module per `lifelean` subcommand (registered in :data:`agent.cli.COMMANDS`)."""
