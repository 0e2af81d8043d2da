"""`python -m babyjax.score`: the command lives in babyjax/commands/score.py (its options: babyjax/score/config.py)."""

from babyjax.commands import score

if __name__ == "__main__":
    score.main()
