"""ConfigBot: online profiling and constrained tuning of a robot's nodes, with a context library.

After ConfigBot (arXiv 2501.10513, "Adaptive Resource Allocation for Robot Applications in
Dynamic Environments"): a specification (spec.py) of core constraints and an objective, a
profiler of the bus (profiler.py), actuators for CPU quotas and weights, rate caps, parameters,
affinity and power modes (actuators/), constrained Bayesian optimisation with Optuna
(tuner.py, tuning.py), a monitor with a context library (bot.py, context.py, library.py), and
its record (timeline.py). `tether configbot tune --spec FILE` runs it on any running stack.
"""

from tether.edge.configbot.bot import BotOptions, ConfigBot, Mode, SpecRuntimeError, State
from tether.edge.configbot.context import Context, ContextTracker
from tether.edge.configbot.evaluate import Evaluation, evaluate
from tether.edge.configbot.library import ContextLibrary, LibraryEntry
from tether.edge.configbot.profiler import Profiler, rate_from_arrivals
from tether.edge.configbot.spec import Knob, Signal, Spec, SpecError, load_spec
from tether.edge.configbot.timeline import Timeline
from tether.edge.configbot.tuner import Tuner, probe_config

__all__ = [
    "BotOptions",
    "ConfigBot",
    "Context",
    "ContextLibrary",
    "ContextTracker",
    "Evaluation",
    "Knob",
    "LibraryEntry",
    "Mode",
    "Profiler",
    "Signal",
    "Spec",
    "SpecError",
    "SpecRuntimeError",
    "State",
    "Timeline",
    "Tuner",
    "evaluate",
    "load_spec",
    "probe_config",
    "rate_from_arrivals",
]
