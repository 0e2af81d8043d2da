"""`python -m babyjax.study`: the command lives in babyjax/commands/study.py."""

from babyjax.commands import study

if __name__ == "__main__":
    study.main()
