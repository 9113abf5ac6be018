"""Agents written with other frameworks, hosted by stalwart (DESIGN.md layer 4½).

Each framework's own loop runs unchanged inside a stalwart task; stalwart intercepts
the two boundaries where a run touches the world, the model call and the tool call,
and sends them through its journaled, guarded, resilient path (as Temporal, DBOS and
Restate host these frameworks). One module per framework, each importing its
framework, which is an optional extra::

    pip install 'stalwart[pydantic-ai]'     # stalwart.adapters.pydantic_ai
    pip install 'stalwart[openai-agents]'   # stalwart.adapters.openai_agents
    pip install 'stalwart[langgraph]'       # stalwart.adapters.langgraph

Nothing in the core imports this package (an import-linter contract says so).
"""
