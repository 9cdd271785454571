"""`python -m indexer` = the `indexer` command."""
from .cli import main

if __name__ == "__main__":
    main()
