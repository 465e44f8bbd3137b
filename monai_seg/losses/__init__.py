"""losses"""

from .two_head import TwoHeadLoss, presence_target, split_presence
