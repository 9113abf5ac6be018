"""stalwart.tools (see DESIGN.md)."""
