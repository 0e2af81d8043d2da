"""`python -m babyjax.generate`: the command lives in babyjax/score/generate.py."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("babyjax.score.generate", run_name="__main__", alter_sys=True)
