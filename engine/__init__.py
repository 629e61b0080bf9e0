"""Pure decisions of rappel: policy models, facts, the rules engine and the ledger logic.

Nothing in this package reads the clock, a database, a file or the network: the date being
evaluated (``as_of``) and every fact are passed in.
"""
