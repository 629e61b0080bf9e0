"""How a rendered notice leaves rappel: the channel contract (base), the registry that builds the
configured channels from the policy, and one module per channel (outbox, smtp, printer, mailbox,
memory)."""
