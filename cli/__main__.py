"""`python -m cli`: the same as the `rappel` command."""
from cli import main

main()
