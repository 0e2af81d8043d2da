"""`python -m babyjax.export`: the command lives in babyjax/commands/export.py."""

if __name__ == "__main__":
    from babyjax.commands import export

    export.main()
