"""The built-in ``llm`` skill type and the LLM providers it calls (docs/llm-providers.md).

- :mod:`~kijko_core.llm.providers`: which protocol a provider speaks, its address and key (the
  organization's own, else the platform's settings);
- :mod:`~kijko_core.llm.keys`: organizations' stored keys (encrypted, ``kijko.llm_keys``), and
  :mod:`~kijko_core.llm.models` their wire models;
- :mod:`~kijko_core.llm.calls`: one call through the official SDK (``openai``, ``anthropic``),
  its failure classified;
- :mod:`~kijko_core.llm.retry`: the retry policy of transient failures;
- :mod:`~kijko_core.llm.tracing`: Langfuse traces, when configured;
- :mod:`~kijko_core.llm.skill`: :class:`~kijko_core.llm.skill.LlmSkillType`, tying them together.
"""
