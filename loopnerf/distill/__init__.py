"""Stage 2: looping distillation (the looping loss, the loop model, `loopnerf distill`).

`looping_loss` is loaded on first use, so importing this package stays cheap (no torch).
"""

__all__ = ["looping_loss"]


def __getattr__(name):
    if name == "looping_loss":
        from loopnerf.distill.looping_loss import looping_loss

        # Importing the sub-module of the same name set this package's attribute to the
        # module; the public name is the function.
        globals()["looping_loss"] = looping_loss
        return looping_loss
    raise AttributeError(f"module 'loopnerf.distill' has no attribute {name!r}")
