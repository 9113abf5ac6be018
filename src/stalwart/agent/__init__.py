"""stalwart.agent (see DESIGN.md)."""
