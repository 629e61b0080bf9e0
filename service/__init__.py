"""rappel's use cases, the only callers of engine/ and adapters/ together: opening an
installation, the day (plan, run, dispatch), imports, patron services, status, the daemon loop.
Every front end (the command line, the daemon) goes through here."""
