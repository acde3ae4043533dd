"""The worked example of ``docs/writing-a-backend.md``: a tiny transport (:mod:`.transport`) and a
plugin module (:mod:`.plugin`) with one implementation of every AMB hook."""

from .transport import TinyBroker, TinyError, TinyTransport

__all__ = ["TinyBroker", "TinyError", "TinyTransport"]
