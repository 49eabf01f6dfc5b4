"""smartft: robust fine-tuning of pre-trained language models.

The public API for one's own training loop:

    from smartft import SmartRegularizer, SmartConfig, MeanTeacher
"""

from smartft.errors import ConfigError, DataError, SmartftError
from smartft.losses import symmetric_kl
from smartft.methods.smart import BregmanConfig, SmartConfig, SmartRegularizer, make_teacher
from smartft.teacher import MeanTeacher

__version__ = "0.1.0"

__all__ = [
    "BregmanConfig",
    "ConfigError",
    "DataError",
    "MeanTeacher",
    "SmartConfig",
    "SmartRegularizer",
    "SmartftError",
    "make_teacher",
    "symmetric_kl",
]
