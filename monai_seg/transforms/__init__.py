"""transforms"""

from .presence import PresenceGatingd, gate_mask
from .uncertainty import ProbabilityEntropyd, SplitUncertaintyd
