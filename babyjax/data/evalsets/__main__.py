"""`python -m babyjax.data.evalsets tokens ...`: the command lives in babyjax/commands/evalsets.py."""

from babyjax.commands import evalsets

if __name__ == "__main__":
    evalsets.main()
