"""tiergate: a governor between a business's apps and the WhatsApp Business Platform.

It counts unique recipients per rolling 24 h window exactly, never lets a scope exceed its
messaging tier, queues what cannot go now durably, and plans large campaigns over days.
"""

__version__ = "0.1.0"
