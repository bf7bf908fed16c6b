"""Strategies inside other training loops: PyTorch Lightning (``coreselect.integrations.lightning``, extra
``lightning``) and the Hugging Face ``Trainer`` (``coreselect.integrations.huggingface``, extra ``huggingface``),
both on one :class:`~coreselect.integrations.feed.SelectionFeed`."""
