"""`python -m babyjax.generate`: the command lives in babyjax/commands/generate.py."""

if __name__ == "__main__":
    from babyjax.commands import generate

    generate.main()
