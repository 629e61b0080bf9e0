"""rappel's own database: the schema and its migrations, facts, the ledger and the notices, the
lease, the installation guard's id and the run history. Everything SQL lives under here."""
