"""Model clients on the official SDKs and LiteLLM, for an app that already has one.

Each is a :class:`~stalwart.llm.StreamingModelClient` that sends its request with the
SDK (its auth, base URL, proxies, Azure or gateway settings: yours) but encodes it
from stalwart's capability table and decodes the answer with stalwart's wire format,
so it gets the same parameters (``max_completion_tokens``, no ``temperature`` where
refused, structured output, prompt-cache marks, parallel tool calls) and the same
error classes (a parameter-incompatibility 400 is
:class:`~stalwart.errors.ModelCannotServe`, a 429 :class:`~stalwart.errors.RateLimited`
with its ``Retry-After``) as the built-in clients. Give one to an app with
``Provider(client=...)``; stalwart wraps it in :class:`~stalwart.llm.GuardedModel`
(deadline, retry, breaker, fallback, budget, journal, trace, log line). The SDK's own
retries are turned off: stalwart's policy makes them.

Each module imports its SDK, an optional extra: ``pip install 'stalwart[openai]'``
(:mod:`stalwart.llm.sdk.openai`), ``'stalwart[anthropic]'``
(:mod:`stalwart.llm.sdk.anthropic`), ``'stalwart[litellm]'``
(:mod:`stalwart.llm.sdk.litellm`). Nothing else in stalwart imports them.
"""
