"""transforms"""

from .presence import PresenceGatingd, gate_mask
