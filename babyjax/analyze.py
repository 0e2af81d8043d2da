"""`python -m babyjax.analyze`: the command lives in babyjax/commands/analyze.py."""

if __name__ == "__main__":
    from babyjax.commands import analyze

    analyze.main()
