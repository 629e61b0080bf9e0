"""The staff interface (`rappel serve`): server-rendered pages for the desk and the overdue service,
and the JSON API under /api/. All I/O: every decision comes from engine/ through service/."""
