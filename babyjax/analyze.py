"""`python -m babyjax.analyze`: the command lives in babyjax/commands/analyze.py."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("babyjax.commands.analyze", run_name="__main__", alter_sys=True)
