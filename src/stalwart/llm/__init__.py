"""stalwart.llm (see DESIGN.md)."""
