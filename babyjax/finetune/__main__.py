"""`python -m babyjax.finetune`: the command lives in babyjax/commands/finetune.py."""

if __name__ == "__main__":
    from babyjax.commands import finetune

    finetune.main()
