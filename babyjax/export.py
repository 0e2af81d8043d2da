"""`python -m babyjax.export`: the command lives in babyjax/interop/export.py."""

if __name__ == "__main__":
    import runpy

    runpy.run_module("babyjax.interop.export", run_name="__main__", alter_sys=True)
