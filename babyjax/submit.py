"""`python -m babyjax.submit`: the command lives in babyjax/commands/submit.py."""

if __name__ == "__main__":
    from babyjax.commands import submit

    submit.main()
