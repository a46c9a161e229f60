"""Which LoRA adapter answers in a conversation.

``LOREBOT_ADAPTER`` if set, else the adapter the training registry has promoted; a per-channel
setting (``LOREBOT_CHANNEL_ADAPTERS``) overrides either for its channels. ``base`` anywhere means
the base model. The registry is read on every question, so a promotion takes effect at once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from training.registry import AdapterRegistry

log = logging.getLogger(__name__)

BASE_MODEL = "base"


@dataclass
class AdapterChoice:
    configured: str | None = None
    registry: AdapterRegistry | None = None
    per_channel: Mapping[str, str] = field(default_factory=dict)

    def adapter_for(self, conversation_id: str | None) -> str | None:
        """The adapter to ask for, or None for the base model.

        >>> choice = AdapterChoice(configured="lorebot-v2", per_channel={"C0LEGAL": "base", "C0OPS": "ops-v1"})
        >>> choice.adapter_for("C0ENG"), choice.adapter_for("C0LEGAL"), choice.adapter_for("C0OPS")
        ('lorebot-v2', None, 'ops-v1')
        """
        name = self.per_channel.get(conversation_id or "") or self.configured or self._promoted()
        return None if not name or name == BASE_MODEL else name

    def _promoted(self) -> str | None:
        if self.registry is None:
            return None
        try:
            return self.registry.promoted()
        except ValueError:
            log.error("could not read the promoted adapter: answering with the base model", exc_info=True)
            return None
